//! `/agent/v1`: registration, the sync call and content by digest. This is the hot path: a sync
//! that changes nothing takes the read lock only, allocates little and never touches the store.

use std::{collections::BTreeMap, sync::atomic::Ordering, time::Instant};

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use flotilla_api::{
    ClusterState,
    agent::{
        BundleReport, InlineContent, RegisterRequest, RegisterResponse, SyncRequest, SyncResponse,
    },
};
use flotilla_core::validate::shown;

use super::{Path, body::RawBody};
use crate::{
    auth::{bearer, secret_matches, split_credential},
    error::{ApiError, ApiResult},
    metrics::ResultLabel,
    state::{SharedState, now_seconds},
    writes,
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
    let written = writes::clusters::register(state, request).await?;
    Ok((written.object, written.created))
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
    let mut request: SyncRequest = body.json()?;
    bound_sync(&mut request)?;
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

/// Longest digest or etag a sync may carry: the agent sends 64 hex digits; the report digest is
/// stored with the cluster.
const MAX_DIGEST_CHARS: usize = 128;
/// Longest deployment id in a report: ids are 16 hex digits (`digest::deployment_id`).
const MAX_DEPLOYMENT_CHARS: usize = 64;
/// Longest bundle name (a DNS subdomain).
const MAX_BUNDLE_NAME_CHARS: usize = 253;
/// Most bundle reports, and most removed names, in one sync: a cluster reports only the bundles
/// it runs, and the admin-write benchmark's largest fleet has 20,000 bundles.
const MAX_REPORTS_PER_SYNC: usize = 20_000;
/// Longest report message (and problem message) kept; a longer one is cut with a marker. Like a
/// Kubernetes Event's note (1 KiB at most), enough for the error an API server returns.
const MAX_MESSAGE_CHARS: usize = 1_024;
/// Most problem objects kept per report (what the agent sends at most); the rest are counted in
/// `moreProblems`.
const MAX_PROBLEMS: usize = 10;
/// Longest kind, namespace and name of a problem object kept (Kubernetes names are at most 253).
const MAX_OBJECT_FIELD_CHARS: usize = 253;

/// `text` cut to `most` characters, ending with a marker saying how much was cut.
fn truncate_text(text: &mut String, most: usize) {
    if let Some((cut, _)) = text.char_indices().nth(most) {
        let dropped = text.len() - cut;
        text.truncate(cut);
        text.push_str(&format!("… [{dropped} more bytes truncated by the server]"));
    }
}

/// Cuts a report to the bounds the server stores: the message and each problem's text
/// shortened with a marker, problems past `MAX_PROBLEMS` counted in `more_problems`. Reports are
/// level-based (the next one replaces it), so a shortened report beats refusing the sync, which
/// would also drop the heartbeat and the desired set.
fn truncate_report(report: &mut BundleReport) {
    if let Some(message) = report.message.as_mut() {
        truncate_text(message, MAX_MESSAGE_CHARS);
    }
    if report.problems.len() > MAX_PROBLEMS {
        let dropped = report.problems.len() - MAX_PROBLEMS;
        report.problems.truncate(MAX_PROBLEMS);
        report.more_problems = report
            .more_problems
            .saturating_add(u32::try_from(dropped).unwrap_or(u32::MAX));
    }
    for problem in &mut report.problems {
        truncate_text(&mut problem.kind, MAX_OBJECT_FIELD_CHARS);
        truncate_text(&mut problem.name, MAX_OBJECT_FIELD_CHARS);
        if let Some(namespace) = problem.namespace.as_mut() {
            truncate_text(namespace, MAX_OBJECT_FIELD_CHARS);
        }
        truncate_text(&mut problem.message, MAX_MESSAGE_CHARS);
    }
}

/// Bounds a sync request before it reaches the model: identifiers the server matches exactly
/// (digests, bundle names, deployment ids) and counts are refused with 422 when out of bounds,
/// free text in reports is cut (see `truncate_report`), facts are checked (`documents::facts`).
fn bound_sync(request: &mut SyncRequest) -> ApiResult<()> {
    for (field, digest) in [
        ("reportDigest", Some(&request.report_digest)),
        ("baseDigest", request.base_digest.as_ref()),
        ("etag", request.etag.as_ref()),
    ] {
        if let Some(digest) = digest
            && digest.len() > MAX_DIGEST_CHARS
        {
            return Err(ApiError::Unprocessable(format!(
                "{field} is {} bytes; a digest is at most {MAX_DIGEST_CHARS}",
                digest.len()
            )));
        }
    }
    if let Some(facts) = &request.facts {
        flotilla_core::documents::facts(facts)?;
    }
    for (field, count) in [
        ("bundles", request.bundles.len()),
        ("removed", request.removed.len()),
    ] {
        if count > MAX_REPORTS_PER_SYNC {
            return Err(ApiError::Unprocessable(format!(
                "{field} holds {count} entries; one sync carries at most {MAX_REPORTS_PER_SYNC}: send the rest in the next sync"
            )));
        }
    }
    for (index, name) in request.removed.iter().enumerate() {
        if name.len() > MAX_BUNDLE_NAME_CHARS {
            return Err(ApiError::Unprocessable(format!(
                "removed[{index}] {} is not a bundle name (at most {MAX_BUNDLE_NAME_CHARS} characters)",
                shown(name)
            )));
        }
    }
    for (index, report) in request.bundles.iter_mut().enumerate() {
        if report.bundle.len() > MAX_BUNDLE_NAME_CHARS {
            return Err(ApiError::Unprocessable(format!(
                "bundles[{index}].bundle {} is not a bundle name (at most {MAX_BUNDLE_NAME_CHARS} characters)",
                shown(&report.bundle)
            )));
        }
        if report.deployment.len() > MAX_DEPLOYMENT_CHARS {
            return Err(ApiError::Unprocessable(format!(
                "bundles[{index}].deployment {} is not a deployment id; send the id from the desired set",
                shown(&report.deployment)
            )));
        }
        truncate_report(report);
    }
    Ok(())
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
            fleet.contents().get(&digest).cloned()
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
