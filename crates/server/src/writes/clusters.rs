//! Cluster writes: registration (an agent creates its cluster), label edits, deletes.
//!
//! Registration does not take the admin lock: thousands of agents register per second, so a
//! registration reserves its name and a use of its token under the fleet's write lock, commits
//! outside it, and settles the reservation after.

use flotilla_api::{
    Cluster, Kind,
    agent::{RegisterRequest, RegisterResponse},
};
use flotilla_core::documents;

use super::{Mode, WriteError, WriteResult, Written, check_version, commit, not_found};
use crate::{
    auth::{hash_secret, new_secret, secret_matches, split_credential},
    fleet::clusters::NewCluster,
    records::{self, ClusterRecord, CredentialRecord},
    state::{AppState, now_seconds},
    view,
};

fn invalid_token() -> WriteError {
    WriteError::Unauthorized("invalid registration token; ask an admin for a new one".into())
}

/// Registers a cluster with a registration token: a new cluster, or a new credential for the
/// same agent installation (same client id). Returns the credential, shown only here.
pub async fn register(
    state: &AppState,
    request: RegisterRequest,
) -> WriteResult<Written<RegisterResponse>> {
    let (token_name, token_secret) = split_credential(&request.token).ok_or_else(invalid_token)?;
    documents::registration(&request)?;
    let secret = new_secret();
    let credential_hash = hash_secret(&secret);
    let now = now_seconds();
    // Check the token and the name, and reserve both, under the lock; commit outside it.
    let (labels, is_new) = {
        let mut fleet = state.fleet.write();
        let token = fleet.tokens().get(token_name).ok_or_else(invalid_token)?;
        if !secret_matches(token_secret, &token.secret_hash) {
            return Err(invalid_token());
        }
        if token.expires_at.is_some_and(|at| at <= now) {
            return Err(WriteError::Unauthorized(format!(
                "registration token {token_name:?} has expired; create a new one with `flotilla token create`"
            )));
        }
        let existing = fleet
            .cluster_by_name(&request.name)
            .map(|(_, c)| c.client_id.clone());
        match existing {
            Some(client_id) if *client_id == *request.client_id => (None, false),
            Some(_) => {
                return Err(WriteError::Conflict(format!(
                    "cluster name {:?} is registered by another agent; choose another --name, or delete the cluster first",
                    request.name
                )));
            }
            None => {
                if fleet.registration_pending(&request.name) {
                    return Err(WriteError::Conflict(format!(
                        "cluster {:?} is being registered by another request; retry",
                        request.name
                    )));
                }
                if token
                    .spec
                    .max_uses
                    .is_some_and(|max| token.uses + token.reserved >= max)
                {
                    return Err(WriteError::Unauthorized(format!(
                        "registration token {token_name:?} is used up; create a new one with `flotilla token create`"
                    )));
                }
                let labels = documents::registered_labels(&request.labels, &token.spec.labels)?;
                fleet.reserve_registration(token_name, &request.name);
                (Some(labels), true)
            }
        }
    };
    let mut ops = vec![records::put(
        records::CREDENTIAL,
        &request.name,
        &CredentialRecord {
            client_id: request.client_id.clone(),
            hash: hex::encode(credential_hash),
        },
    )];
    if let Some(labels) = &labels {
        ops.push(records::put(
            records::CLUSTER,
            &request.name,
            &ClusterRecord {
                labels: labels.clone(),
                generation: 1,
                created: now,
            },
        ));
        ops.push(flotilla_store::Op::Increment {
            counter: records::token_uses_counter(token_name),
            by: 1,
        });
    }
    let committed = commit(state, ops).await;
    let mut fleet = state.fleet.write();
    if is_new {
        fleet.settle_registration(token_name, &request.name, committed.is_ok());
    }
    let revision = committed?;
    match labels {
        Some(labels) => {
            fleet.insert_cluster(NewCluster {
                name: request.name.clone(),
                labels,
                credential_hash,
                client_id: request.client_id.clone(),
                generation: 1,
                revision,
                created: now,
            });
        }
        None => {
            if let Some((ordinal, _)) = fleet.cluster_by_name(&request.name) {
                fleet.set_credential(ordinal, None, credential_hash);
            }
        }
    }
    drop(fleet);
    tracing::debug!(cluster = %request.name, new = is_new, "cluster registered");
    Ok(Written {
        created: is_new,
        object: RegisterResponse {
            credential: format!("{}.{}", request.name, secret),
            name: request.name,
        },
    })
}

/// Replaces a cluster's labels (the only part an admin writes); it is re-targeted at once.
pub async fn write(
    state: &AppState,
    cluster: Cluster,
    mode: Mode,
) -> WriteResult<Written<Cluster>> {
    let name = cluster.metadata.name.clone();
    if mode == Mode::Create {
        return Err(WriteError::NotAllowed(
            "clusters are created by agent registration: create a token with `flotilla token create` and run `flotilla agent --token …`".into(),
        ));
    }
    documents::cluster(&cluster)?;
    let _serialized = state.admin_lock.lock().await;
    let (created, generation) = {
        let fleet = state.fleet.read();
        let (_, existing) = fleet.cluster_by_name(&name).ok_or_else(|| {
            WriteError::NotFound(format!(
                "cluster {name:?} not found; clusters are created by agent registration"
            ))
        })?;
        check_version(
            &cluster.metadata.resource_version,
            Some(existing.revision.to_string().as_str()),
            "the cluster",
        )?;
        let changed = fleet.labels_map(&existing.labels) != cluster.metadata.labels;
        (existing.created, existing.generation + u64::from(changed))
    };
    let record = ClusterRecord {
        labels: cluster.metadata.labels.clone(),
        generation,
        created,
    };
    let revision = commit(state, vec![records::put(records::CLUSTER, &name, &record)]).await?;
    let mut fleet = state.fleet.write();
    let (ordinal, _) = fleet
        .cluster_by_name(&name)
        .ok_or_else(|| WriteError::Conflict(format!("cluster {name:?} was deleted meanwhile")))?;
    fleet.relabel_cluster(ordinal, &cluster.metadata.labels, generation, revision);
    let object =
        view::cluster(&fleet, ordinal).ok_or_else(|| WriteError::internal("cluster vanished"))?;
    Ok(Written {
        created: false,
        object,
    })
}

/// Deletes a cluster with its credential and soft state; its agent can no longer sync.
pub async fn delete(state: &AppState, name: &str) -> WriteResult<()> {
    let _serialized = state.admin_lock.lock().await;
    if state.fleet.read().cluster_by_name(name).is_none() {
        return Err(not_found(Kind::Cluster, name));
    }
    commit(
        state,
        vec![
            records::delete(records::CLUSTER, name),
            records::delete(records::CREDENTIAL, name),
            records::delete(records::REPORT, name),
        ],
    )
    .await?;
    let mut fleet = state.fleet.write();
    if let Some((ordinal, _)) = fleet.cluster_by_name(name) {
        fleet.remove_cluster(ordinal);
    }
    Ok(())
}
