//! `/agent/v1`: registration, the sync call and content by digest. This is the hot path: a sync
//! that changes nothing takes the read lock only, allocates little and never touches the store.

use std::{collections::BTreeMap, sync::atomic::Ordering, time::Instant};

use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use flotilla_api::{
    ClusterState,
    agent::{InlineContent, RegisterRequest, RegisterResponse, SyncRequest, SyncResponse},
};
use flotilla_core::{
    selector::{validate_label_key, validate_label_value},
    validate::validate_dns_label,
};

use super::body::RawBody;
use crate::{
    auth::{bearer, hash_secret, new_secret, secret_matches, split_credential},
    error::{ApiError, ApiResult},
    fleet::clusters::NewCluster,
    metrics::ResultLabel,
    records::{self, ClusterRecord, CredentialRecord},
    state::{SharedState, now_seconds},
};

fn invalid_credential() -> ApiError {
    ApiError::Unauthorized(
        "missing or invalid cluster credential; re-register the agent with a registration token"
            .into(),
    )
}

/// Authenticates a cluster credential; returns the cluster's ordinal.
fn authenticate(state: &SharedState, headers: &HeaderMap) -> ApiResult<u32> {
    let credential = bearer(headers.get(header::AUTHORIZATION)).ok_or_else(invalid_credential)?;
    let (name, secret) = split_credential(credential).ok_or_else(invalid_credential)?;
    let fleet = state.fleet.read();
    let (ordinal, cluster) = fleet.cluster_by_name(name).ok_or_else(invalid_credential)?;
    if !secret_matches(secret, &cluster.credential_hash) {
        return Err(invalid_credential());
    }
    Ok(ordinal)
}

pub async fn register(State(state): State<SharedState>, body: RawBody) -> ApiResult<Response> {
    let result = register_inner(&state, body).await;
    let label = match &result {
        Ok((_, true)) => "created",
        Ok((_, false)) => "renewed",
        Err(_) => "rejected",
    };
    state
        .metrics
        .registrations
        .get_or_create(&ResultLabel { result: label })
        .inc();
    let (response, created) = result?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(response)).into_response())
}

/// Registers a cluster; returns the response and whether the cluster is new.
async fn register_inner(state: &SharedState, body: RawBody) -> ApiResult<(RegisterResponse, bool)> {
    let request: RegisterRequest = body.json()?;
    let invalid_token =
        || ApiError::Unauthorized("invalid registration token; ask an admin for a new one".into());
    let (token_name, token_secret) = split_credential(&request.token).ok_or_else(invalid_token)?;
    validate_dns_label(&request.name).map_err(|e| ApiError::BadRequest(format!("cluster {e}")))?;
    if request.client_id.is_empty() || request.client_id.len() > 256 {
        return Err(ApiError::BadRequest(
            "clientId must be 1 to 256 characters identifying the agent installation".into(),
        ));
    }
    for (key, value) in &request.labels {
        validate_label_key(key)
            .and_then(|()| validate_label_value(value))
            .map_err(|e| ApiError::BadRequest(format!("label {key}={value}: {e}")))?;
    }
    let secret = new_secret();
    let credential_hash = hash_secret(&secret);
    let now = now_seconds();
    // Check the token and the name, and reserve both, under the lock; commit outside it.
    let (labels, is_new) = {
        let mut fleet = state.fleet.write();
        let token = fleet.tokens.get(token_name).ok_or_else(invalid_token)?;
        if !secret_matches(token_secret, &token.secret_hash) {
            return Err(invalid_token());
        }
        if token.expires_at.is_some_and(|at| at <= now) {
            return Err(ApiError::Unauthorized(format!(
                "registration token {token_name:?} has expired; create a new one with `flotilla token create`"
            )));
        }
        let existing = fleet
            .cluster_by_name(&request.name)
            .map(|(_, c)| c.client_id.clone());
        match existing {
            Some(client_id) if *client_id == *request.client_id => (None, false),
            Some(_) => {
                return Err(ApiError::Conflict(format!(
                    "cluster name {:?} is registered by another agent; choose another --name, or delete the cluster first",
                    request.name
                )));
            }
            None => {
                if fleet.pending_registrations.contains(&request.name) {
                    return Err(ApiError::Conflict(format!(
                        "cluster {:?} is being registered by another request; retry",
                        request.name
                    )));
                }
                let token = fleet.tokens.get_mut(token_name).ok_or_else(invalid_token)?;
                if token
                    .spec
                    .max_uses
                    .is_some_and(|max| token.uses + token.reserved >= max)
                {
                    return Err(ApiError::Unauthorized(format!(
                        "registration token {token_name:?} is used up; create a new one with `flotilla token create`"
                    )));
                }
                token.reserved += 1;
                let mut labels = request.labels.clone();
                labels.extend(token.spec.labels.clone());
                fleet.pending_registrations.insert(request.name.clone());
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
    let started = Instant::now();
    let committed = state.store.commit(ops).await;
    state
        .metrics
        .store_commit_seconds
        .observe(started.elapsed().as_secs_f64());
    let mut fleet = state.fleet.write();
    if is_new {
        fleet.pending_registrations.remove(&request.name);
        if let Some(token) = fleet.tokens.get_mut(token_name) {
            token.reserved -= 1;
            if committed.is_ok() {
                token.uses += 1;
            }
        }
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
            if let Some((ordinal, _)) = fleet.cluster_by_name(&request.name)
                && let Some(cluster) = fleet.cluster_mut(ordinal)
            {
                cluster.credential_hash = credential_hash;
            }
        }
    }
    tracing::debug!(cluster = %request.name, new = is_new, "cluster registered");
    Ok((
        RegisterResponse {
            name: request.name.clone(),
            credential: format!("{}.{}", request.name, secret),
        },
        is_new,
    ))
}

pub async fn sync(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: RawBody,
) -> ApiResult<Response> {
    let started = Instant::now();
    let result = sync_inner(&state, &headers, &body);
    state
        .metrics
        .sync_seconds
        .observe(started.elapsed().as_secs_f64());
    let label = match &result {
        Ok(None) => "unchanged",
        Ok(Some(_)) => "changed",
        Err(_) => "error",
    };
    state
        .metrics
        .syncs
        .get_or_create(&ResultLabel { result: label })
        .inc();
    match result? {
        None => Ok(StatusCode::NO_CONTENT.into_response()),
        Some(reply) => Ok(Json(reply).into_response()),
    }
}

fn sync_inner(
    state: &SharedState,
    headers: &HeaderMap,
    body: &RawBody,
) -> ApiResult<Option<SyncResponse>> {
    let ordinal = authenticate(state, headers)?;
    let request: SyncRequest = body.json()?;
    let now = now_seconds();
    let mut resync = false;
    let mut went_online = false;
    let needs_write = {
        let fleet = state.fleet.read();
        let cluster = fleet.cluster(ordinal).ok_or_else(invalid_credential)?;
        cluster.last_seen.store(now, Ordering::Relaxed);
        // On a shared store the replica holding the offline lease may not be this one: it
        // learns that the cluster is alive from a soft-state write at least every half offline
        // window (about every second sync); alone, no heartbeat is ever written.
        if state.shared_store
            && now
                >= cluster.seen_written.load(Ordering::Relaxed)
                    + state.offline_after(cluster.facts.sync_interval_seconds) / 2
            && crate::fleet::Fleet::mark_dirty(cluster)
        {
            state.note_dirty(ordinal);
        }
        fleet.intake_needs_write(cluster, &request)
    };
    if needs_write {
        let mut fleet = state.fleet.write();
        let intake = fleet.intake(ordinal, &request);
        resync = intake.resync;
        went_online = fleet.set_cluster_state(ordinal, ClusterState::Online);
        if (intake.changed || went_online)
            && let Some(cluster) = fleet.cluster(ordinal)
            && cluster.dirty.load(Ordering::Acquire)
        {
            state.note_dirty(ordinal);
        }
    }
    let fleet = state.fleet.read();
    let cluster = fleet.cluster(ordinal).ok_or_else(invalid_credential)?;
    if went_online {
        let deadline = now + state.offline_after(cluster.facts.sync_interval_seconds);
        state.schedule_deadline(ordinal, deadline);
    }
    let etag = fleet.desired_etag(ordinal);
    let current = request.etag.as_deref() == Some(etag.as_str());
    if current && !resync {
        return Ok(None);
    }
    let bundles = (!current).then(|| fleet.desired_set(ordinal));
    let mut contents = BTreeMap::new();
    if bundles.is_some() {
        let budget = state.settings.inline_content_bytes;
        for (digest, bytes) in fleet.inline_contents(ordinal, budget) {
            if let Some(content) = InlineContent::from_bytes(bytes) {
                contents.insert(digest.to_string(), content);
            }
        }
        if !contents.is_empty() {
            state
                .metrics
                .content_fetches
                .get_or_create(&ResultLabel { result: "inlined" })
                .inc_by(contents.len() as u64);
        }
    }
    Ok(Some(SyncResponse {
        bundles,
        etag,
        resync,
        contents,
    }))
}

pub async fn content(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(digest): Path<String>,
) -> ApiResult<Response> {
    let ordinal = authenticate(&state, &headers)?;
    let bytes = {
        let fleet = state.fleet.read();
        if !fleet.cluster_may_read(ordinal, &digest) {
            None
        } else {
            fleet.contents.get(&digest).cloned()
        }
    };
    let label = if bytes.is_some() { "served" } else { "refused" };
    state
        .metrics
        .content_fetches
        .get_or_create(&ResultLabel { result: label })
        .inc();
    // Content this cluster may not read is indistinguishable from content that does not exist.
    let bytes = bytes.ok_or_else(|| {
        ApiError::NotFound(format!(
            "content {digest} is not in this cluster's desired set; sync first to get current digests"
        ))
    })?;
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=31536000, immutable"),
    );
    Ok(response)
}
