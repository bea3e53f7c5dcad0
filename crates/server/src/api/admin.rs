//! `/api/v1`: create, replace, get, list and delete for every kind. Every write is committed to
//! the store before memory changes and before the response.

use std::{collections::BTreeMap, ops::Bound, time::Instant};

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use base64::Engine;
use flotilla_api::{
    API_VERSION, Bundle, Cluster, ClusterGroup, ClusterState, Kind, List, ObjectMeta,
    RegistrationToken,
};
use flotilla_core::{
    customize::validate_manifests,
    digest::{canonical_content, content_digest},
    selector::Selector,
    validate::{validate_dns_label, validate_dns_subdomain},
};
use flotilla_store::Op;
use serde::Deserialize;
use serde_json::{Value, value::RawValue};

use super::{
    Path, Query,
    body::{RawBody, typed},
    render, sources,
};
use crate::{
    auth::{bearer, hash_secret, new_secret, secret_matches},
    error::{ApiError, ApiResult},
    fleet::{BundleEntry, TokenEntry, live_revision},
    metrics::ResultLabel,
    records::{self, BundleRecord, ClusterRecord, GroupRecord, LiveRecord, TokenRecord},
    state::{SharedState, now_seconds},
};

/// Most items one list page returns; keeps a page's latency and size bounded at any fleet size.
const MAX_PAGE: usize = 5_000;
const DEFAULT_PAGE: usize = 500;

pub fn require_admin(state: &SharedState, headers: &HeaderMap) -> ApiResult<()> {
    let token = bearer(headers.get(header::AUTHORIZATION)).unwrap_or("");
    if token.is_empty() || !secret_matches(token, &state.admin_token_hash) {
        return Err(ApiError::Unauthorized(
            "missing or invalid admin token; pass --token or set FLOTILLA_TOKEN (the server wrote one to <data-dir>/admin-token)".into(),
        ));
    }
    Ok(())
}

fn kind_of(plural: &str) -> ApiResult<Kind> {
    Kind::ALL
        .into_iter()
        .find(|kind| kind.plural() == plural)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "no resource collection {plural:?}; use one of clusters, clustergroups, bundles, registrationtokens"
            ))
        })
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    label_selector: Option<String>,
    state: Option<String>,
    sort: Option<String>,
    limit: Option<usize>,
    #[serde(rename = "continue")]
    continue_token: Option<String>,
}

fn encode_cursor(name: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(name)
}

fn decode_cursor(cursor: &str) -> ApiResult<String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| {
            ApiError::BadRequest(
                "invalid continue token; pass back the value of `continue` from the previous page"
                    .into(),
            )
        })
}

/// The key range after a page cursor, so a page deep in a large list starts there instead of
/// walking every name before it.
fn after_cursor(after: Option<&str>, descending: bool) -> (Bound<&str>, Bound<&str>) {
    match (after, descending) {
        (None, _) => (Bound::Unbounded, Bound::Unbounded),
        (Some(after), false) => (Bound::Excluded(after), Bound::Unbounded),
        (Some(after), true) => (Bound::Unbounded, Bound::Excluded(after)),
    }
}

/// Most bytes of items one list page holds: a page stops early, with a `continue` token, once
/// its items reach this size, so no page is ever the whole fleet's worth of JSON whatever its
/// objects hold (one page once came to 145 MiB). 4 MiB is some forty default pages of typical
/// clusters, and a client parses it in well under a second.
pub const MAX_PAGE_BYTES: usize = 4 << 20;

/// One page of `names` (already past the cursor, see `after_cursor`), in order or reversed:
/// the items `keep` accepts, rendered as JSON, until `limit` items or `MAX_PAGE_BYTES` bytes
/// (at least one item, so a page always makes progress).
fn page<'a, T>(
    names: impl DoubleEndedIterator<Item = (&'a str, T)>,
    descending: bool,
    limit: usize,
    mut keep: impl FnMut(&str, &T) -> bool,
    render: impl FnMut(T) -> Option<Box<RawValue>>,
) -> (Vec<Box<RawValue>>, Option<String>) {
    page_within(names, descending, limit, MAX_PAGE_BYTES, &mut keep, render)
}

/// `page` with the byte budget given (tests use a small one).
fn page_within<'a, T>(
    names: impl DoubleEndedIterator<Item = (&'a str, T)>,
    descending: bool,
    limit: usize,
    budget: usize,
    mut keep: impl FnMut(&str, &T) -> bool,
    mut render: impl FnMut(T) -> Option<Box<RawValue>>,
) -> (Vec<Box<RawValue>>, Option<String>) {
    let iter: Box<dyn Iterator<Item = (&str, T)>> = if descending {
        Box::new(names.rev())
    } else {
        Box::new(names)
    };
    let mut items = Vec::new();
    let mut bytes = 0;
    let mut last = None;
    for (name, item) in iter {
        if !keep(name, &item) {
            continue;
        }
        // Another item matches: if this page is full, it starts the next one.
        if items.len() == limit || bytes >= budget {
            return (items, last.map(|n: &str| encode_cursor(n)));
        }
        let Some(rendered) = render(item) else {
            continue;
        };
        bytes += rendered.get().len();
        last = Some(name);
        items.push(rendered);
    }
    (items, None)
}

/// An item of a list page as JSON (rendering our own documents does not fail).
fn raw<T: serde::Serialize>(item: &T) -> Option<Box<RawValue>> {
    serde_json::value::to_raw_value(item).ok()
}

fn parse_sort(sort: Option<&str>) -> ApiResult<bool> {
    match sort.unwrap_or("name") {
        "name" => Ok(false),
        "-name" => Ok(true),
        other => Err(ApiError::BadRequest(format!(
            "cannot sort by {other:?}; use sort=name or sort=-name"
        ))),
    }
}

fn parse_selector(text: Option<&str>) -> ApiResult<Option<Selector>> {
    text.filter(|t| !t.trim().is_empty())
        .map(|t| Selector::parse(t).map_err(|e| ApiError::BadRequest(e.to_string())))
        .transpose()
}

pub async fn list(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(plural): Path<String>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Response> {
    require_admin(&state, &headers)?;
    let kind = kind_of(&plural)?;
    let selector = parse_selector(query.label_selector.as_deref())?;
    let descending = parse_sort(query.sort.as_deref())?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let after = query
        .continue_token
        .as_deref()
        .map(decode_cursor)
        .transpose()?;
    let after = after.as_deref();
    let now = now_seconds();
    let fleet = state.fleet.read();
    let items_json = |items: Vec<Box<RawValue>>, next: Option<String>, total: Option<u64>| {
        Json(List {
            items,
            continue_token: next,
            total,
        })
        .into_response()
    };
    match kind {
        Kind::Cluster => {
            let wanted_state = query
                .state
                .as_deref()
                .map(|s| {
                    ClusterState::parse(s).ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "unknown cluster state {s:?}; use Online, Offline or Pending"
                        ))
                    })
                })
                .transpose()?;
            let mut matching = match &selector {
                Some(selector) => fleet.index.select(selector, &fleet.interner, &fleet.all),
                None => fleet.all.clone(),
            };
            if wanted_state == Some(ClusterState::Online) {
                matching &= &fleet.online;
            }
            let total = (wanted_state.is_none() || wanted_state == Some(ClusterState::Online))
                .then(|| matching.len());
            let names = fleet
                .cluster_names
                .range::<str, _>(after_cursor(after, descending))
                .map(|(name, ord)| (&**name, *ord));
            let (items, next) = page(
                names,
                descending,
                limit,
                |_, ordinal| {
                    matching.contains(*ordinal)
                        && wanted_state.is_none_or(|wanted| {
                            fleet.cluster(*ordinal).is_some_and(|c| c.state == wanted)
                        })
                },
                |ordinal| raw(&render::cluster(&fleet, ordinal)?),
            );
            Ok(items_json(items, next, total))
        }
        Kind::Bundle => {
            let names = fleet
                .bundle_names
                .range::<str, _>(after_cursor(after, descending))
                .map(|(name, ord)| (name.as_str(), *ord));
            let (items, next) = page(
                names,
                descending,
                limit,
                |_, ordinal| {
                    fleet.bundle(*ordinal).is_some_and(|bundle| {
                        selector
                            .as_ref()
                            .is_none_or(|s| s.matches_map(&bundle.metadata.labels))
                            && query.state.as_deref().is_none_or(|wanted| {
                                render::bundle_state(&fleet, bundle).eq_ignore_ascii_case(wanted)
                            })
                    })
                },
                |ordinal| raw(&render::bundle(&fleet, fleet.bundle(ordinal)?)),
            );
            Ok(items_json(
                items,
                next,
                Some(fleet.bundle_names.len() as u64),
            ))
        }
        Kind::ClusterGroup => {
            let names = fleet
                .groups
                .range::<str, _>(after_cursor(after, descending))
                .map(|(name, group)| (name.as_str(), group));
            let (items, next) = page(
                names,
                descending,
                limit,
                |_, group| {
                    selector
                        .as_ref()
                        .is_none_or(|s| s.matches_map(&group.metadata.labels))
                },
                |group| raw(&render::group(&fleet, &group.metadata.name, group)),
            );
            Ok(items_json(items, next, Some(fleet.groups.len() as u64)))
        }
        Kind::RegistrationToken => {
            let names = fleet
                .tokens
                .range::<str, _>(after_cursor(after, descending))
                .map(|(name, token)| (name.as_str(), token));
            let (items, next) = page(
                names,
                descending,
                limit,
                |_, token| {
                    selector
                        .as_ref()
                        .is_none_or(|s| s.matches_map(&token.metadata.labels))
                        && query.state.as_deref().is_none_or(|wanted| {
                            render::token_state(token, now).eq_ignore_ascii_case(wanted)
                        })
                },
                |token| raw(&render::token(token, now, None)),
            );
            Ok(items_json(items, next, Some(fleet.tokens.len() as u64)))
        }
        Kind::GitRepo => {
            let names = fleet
                .gitrepos
                .range::<str, _>(after_cursor(after, descending))
                .map(|(name, repo)| (name.as_str(), repo));
            let (items, next) = page(
                names,
                descending,
                limit,
                |_, repo| {
                    selector
                        .as_ref()
                        .is_none_or(|s| s.matches_map(&repo.metadata.labels))
                },
                |repo| raw(&sources::render_gitrepo(&fleet, &repo.metadata.name)),
            );
            Ok(items_json(items, next, Some(fleet.gitrepos.len() as u64)))
        }
        Kind::Secret => {
            let names = fleet
                .secrets
                .range::<str, _>(after_cursor(after, descending))
                .map(|(name, secret)| (name.as_str(), secret));
            let (items, next) = page(
                names,
                descending,
                limit,
                |_, secret| {
                    selector
                        .as_ref()
                        .is_none_or(|s| s.matches_map(&secret.metadata.labels))
                },
                |secret| raw(&sources::render_secret(&fleet, &secret.metadata.name)),
            );
            Ok(items_json(items, next, Some(fleet.secrets.len() as u64)))
        }
    }
}

pub async fn get(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((plural, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    require_admin(&state, &headers)?;
    let kind = kind_of(&plural)?;
    let fleet = state.fleet.read();
    let not_found = || ApiError::NotFound(format!("{kind} {name:?} not found"));
    let value = match kind {
        Kind::Cluster => {
            let (ordinal, _) = fleet.cluster_by_name(&name).ok_or_else(not_found)?;
            serde_json::to_value(render::cluster(&fleet, ordinal).ok_or_else(not_found)?)
        }
        Kind::Bundle => {
            let (_, bundle) = fleet.bundle_by_name(&name).ok_or_else(not_found)?;
            serde_json::to_value(render::bundle(&fleet, bundle))
        }
        Kind::ClusterGroup => {
            let group = fleet.groups.get(&name).ok_or_else(not_found)?;
            serde_json::to_value(render::group(&fleet, &name, group))
        }
        Kind::RegistrationToken => {
            let token = fleet.tokens.get(&name).ok_or_else(not_found)?;
            serde_json::to_value(render::token(token, now_seconds(), None))
        }
        Kind::GitRepo => {
            fleet.gitrepos.get(&name).ok_or_else(not_found)?;
            Ok(sources::render_gitrepo(&fleet, &name))
        }
        Kind::Secret => {
            fleet.secrets.get(&name).ok_or_else(not_found)?;
            Ok(sources::render_secret(&fleet, &name))
        }
    }
    .map_err(ApiError::internal)?;
    Ok(Json(value).into_response())
}

/// How a write treats an existing object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// POST: the object must not exist.
    Create,
    /// PUT / apply: create or replace.
    Upsert,
}

pub async fn create(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(plural): Path<String>,
    body: RawBody,
) -> ApiResult<Response> {
    require_admin(&state, &headers)?;
    let kind = kind_of(&plural)?;
    let document = body.document()?;
    write(&state, Some(kind), None, document, Mode::Create).await
}

pub async fn replace(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((plural, name)): Path<(String, String)>,
    body: RawBody,
) -> ApiResult<Response> {
    require_admin(&state, &headers)?;
    let kind = kind_of(&plural)?;
    let document = body.document()?;
    write(&state, Some(kind), Some(name), document, Mode::Upsert).await
}

/// `POST /api/v1/apply`: creates or replaces a document of any kind.
pub async fn apply(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: RawBody,
) -> ApiResult<Response> {
    require_admin(&state, &headers)?;
    let document = body.document()?;
    write(&state, None, None, document, Mode::Upsert).await
}

async fn write(
    state: &SharedState,
    expected: Option<Kind>,
    url_name: Option<String>,
    document: Value,
    mode: Mode,
) -> ApiResult<Response> {
    let result = write_inner(state, expected, url_name, document, mode).await;
    let label = if result.is_ok() { "ok" } else { "rejected" };
    state
        .metrics
        .admin_writes
        .get_or_create(&ResultLabel { result: label })
        .inc();
    result
}

async fn write_inner(
    state: &SharedState,
    expected: Option<Kind>,
    url_name: Option<String>,
    document: Value,
    mode: Mode,
) -> ApiResult<Response> {
    let Value::Object(object) = &document else {
        return Err(ApiError::BadRequest(
            "expected a document (a mapping with apiVersion, kind, metadata and spec)".into(),
        ));
    };
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    if api_version != API_VERSION {
        return Err(ApiError::BadRequest(format!(
            "apiVersion {api_version:?} is not served here; use apiVersion: {API_VERSION}"
        )));
    }
    let kind_text = object.get("kind").and_then(Value::as_str).unwrap_or("");
    let kind = Kind::ALL
        .into_iter()
        .find(|k| k.as_str() == kind_text)
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "unknown kind {kind_text:?}; flotilla serves Cluster, ClusterGroup, Bundle, RegistrationToken, GitRepo and Secret"
            ))
        })?;
    if let Some(expected) = expected
        && expected != kind
    {
        return Err(ApiError::BadRequest(format!(
            "a {kind} does not belong at /api/v1/{}; send it to /api/v1/{}",
            expected.plural(),
            kind.plural()
        )));
    }
    let name = object
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if let Some(url_name) = &url_name
        && url_name != &name
    {
        return Err(ApiError::BadRequest(format!(
            "metadata.name {name:?} does not match the name in the URL {url_name:?}"
        )));
    }
    let _serialized = state.admin_lock.lock().await;
    match kind {
        Kind::Bundle => write_bundle(state, typed(document)?, mode).await,
        Kind::ClusterGroup => write_group(state, typed(document)?, mode).await,
        Kind::RegistrationToken => write_token(state, typed(document)?, mode).await,
        Kind::Cluster => write_cluster(state, typed(document)?, mode).await,
        Kind::GitRepo => {
            let (created, rendered) = sources::write_gitrepo(state, typed(document)?, mode).await?;
            respond(created, &rendered)
        }
        Kind::Secret => {
            let (created, rendered) = sources::write_secret(state, typed(document)?, mode).await?;
            respond(created, &rendered)
        }
    }
}

/// Checks `metadata.labels`: the one label rule (count and Kubernetes syntax), answered with 422
/// here and at registration alike.
pub(super) fn validate_labels(labels: &BTreeMap<String, String>) -> ApiResult<()> {
    flotilla_core::validate::validate_labels("metadata.labels", labels)
        .map_err(ApiError::Unprocessable)
}

/// Checks `metadata.resourceVersion` when the client sent one (optimistic concurrency).
pub(super) fn check_version(
    sent: &Option<String>,
    current: Option<&str>,
    what: &str,
) -> ApiResult<()> {
    if let Some(sent) = sent
        && current != Some(sent.as_str())
    {
        return Err(ApiError::Conflict(format!(
            "{what} was changed since you read it (resourceVersion {sent} is not current); read it again and retry"
        )));
    }
    Ok(())
}

pub(super) fn exists_error(kind: Kind, name: &str) -> ApiError {
    ApiError::Conflict(format!(
        "{kind} {name:?} already exists; use `flotilla apply` to replace it"
    ))
}

pub(crate) async fn commit(state: &SharedState, ops: Vec<Op>) -> ApiResult<u64> {
    let started = Instant::now();
    let revision = state.store.commit(ops).await?;
    state
        .metrics
        .store_commit_seconds
        .observe(started.elapsed().as_secs_f64());
    Ok(revision)
}

pub(super) fn respond<T: serde::Serialize>(created: bool, object: &T) -> ApiResult<Response> {
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(serde_json::to_value(object).map_err(ApiError::internal)?),
    )
        .into_response())
}

pub(super) fn fresh_metadata(
    metadata: &ObjectMeta,
    old: Option<&ObjectMeta>,
    changed: bool,
    now: u64,
) -> ObjectMeta {
    ObjectMeta {
        name: metadata.name.clone(),
        labels: metadata.labels.clone(),
        annotations: metadata.annotations.clone(),
        generation: match old {
            Some(old) if changed => old.generation + 1,
            Some(old) => old.generation,
            None => 1,
        },
        resource_version: None,
        creation_timestamp: old
            .and_then(|o| o.creation_timestamp.clone())
            .or_else(|| Some(crate::state::rfc3339(now))),
    }
}

async fn write_bundle(state: &SharedState, bundle: Bundle, mode: Mode) -> ApiResult<Response> {
    let prepared = {
        let fleet = state.fleet.read();
        prepare_bundle(&fleet, bundle, mode, None)?
    };
    let created = prepared.created;
    let revision = commit(state, prepared.ops.clone()).await?;
    let mut fleet = state.fleet.write();
    let ordinal = apply_bundle(&mut fleet, prepared, revision)?;
    release_contents(&mut fleet);
    let rendered = fleet
        .bundle(ordinal)
        .map(|bundle| render::bundle(&fleet, bundle))
        .ok_or_else(|| ApiError::internal("bundle vanished after write"))?;
    respond(created, &rendered)
}

/// Drops content a write put that no bundle took up. Content a bundle lets go of is released
/// as it does (reference counts in `fleet::contents`), so this is O(content just put), not a
/// walk over every bundle.
pub fn release_contents(fleet: &mut crate::fleet::Fleet) {
    fleet.contents.release_unreferenced();
}

/// A validated bundle write: the store ops to commit, then what memory applies.
pub struct PreparedBundle {
    pub name: String,
    pub created: bool,
    /// Whether anything changes (a GitRepo re-render that changed nothing writes nothing).
    pub changed: bool,
    pub ops: Vec<Op>,
    metadata: ObjectMeta,
    spec: flotilla_api::BundleSpec,
    spec_digest: String,
    live: Option<LiveRecord>,
    owner: Option<String>,
    dependencies: Vec<crate::fleet::Dependency>,
    target_digests: Vec<String>,
    contents: Vec<(String, Vec<u8>)>,
}

/// Validates a bundle write against the current model and builds its store ops. `owner` is the
/// GitRepo writing it; admins (`None`) may not change a bundle a GitRepo owns.
pub fn prepare_bundle(
    fleet: &crate::fleet::Fleet,
    bundle: Bundle,
    mode: Mode,
    owner: Option<&str>,
) -> ApiResult<PreparedBundle> {
    let name = bundle.metadata.name.clone();
    validate_dns_subdomain(&name).map_err(|e| ApiError::Unprocessable(format!("bundle {e}")))?;
    validate_labels(&bundle.metadata.labels)?;
    validate_manifests(&bundle.spec.resources)
        .map_err(|e| ApiError::Unprocessable(format!("spec.resources: {e}")))?;
    let content = canonical_content(&bundle.spec.resources);
    let spec_digest = content_digest(&content);
    // Validate targets now, whether or not this revision goes live.
    live_revision(
        0,
        spec_digest.clone(),
        &bundle.spec.resources,
        &bundle.spec.targets,
        false,
        &bundle.spec.drift,
    )
    .map_err(ApiError::Unprocessable)?;
    let dependencies = crate::fleet::compile_dependencies(&bundle.spec.depends_on)
        .map_err(ApiError::Unprocessable)?;
    if let Some(index) = bundle
        .spec
        .depends_on
        .iter()
        .position(|d| d.name.as_deref() == Some(name.as_str()))
    {
        return Err(ApiError::Unprocessable(format!(
            "spec.dependsOn[{index}]: a bundle cannot depend on itself"
        )));
    }
    if !dependencies.is_empty()
        && let Some(cycle) =
            fleet.dependency_cycle(&[crate::fleet::dependencies::CandidateBundle {
                name: &name,
                labels: &bundle.metadata.labels,
                dependencies: &dependencies,
            }])
    {
        return Err(ApiError::Unprocessable(dependency_cycle_error(&cycle)));
    }
    flotilla_core::targeting::check_customizations(&bundle.spec.resources, &bundle.spec.targets)
        .map_err(ApiError::Unprocessable)?;
    let now = now_seconds();
    let (old_meta, old_live, spec_changed) = match fleet.bundle_by_name(&name) {
        Some((_, old)) => {
            if mode == Mode::Create {
                return Err(exists_error(Kind::Bundle, &name));
            }
            if old.owner.as_deref() != owner {
                return Err(owned_error(&name, old.owner.as_deref()));
            }
            check_version(
                &bundle.metadata.resource_version,
                old.metadata.resource_version.as_deref(),
                "the bundle",
            )?;
            let old_live = old.live.as_ref().map(|live| LiveRecord {
                generation: live.generation,
                digest: live.digest.clone(),
                targets: old.live_targets.clone(),
                keep_resources: live.keep_resources,
                drift: live.drift.clone(),
                target_digests: Vec::new(),
            });
            (
                Some(old.metadata.clone()),
                old_live,
                old.spec != bundle.spec,
            )
        }
        None => (None, None, true),
    };
    let changed = spec_changed
        || old_meta.as_ref().is_none_or(|old| {
            old.labels != bundle.metadata.labels || old.annotations != bundle.metadata.annotations
        });
    let metadata = fresh_metadata(&bundle.metadata, old_meta.as_ref(), spec_changed, now);
    let live = if bundle.spec.paused {
        old_live
    } else {
        Some(LiveRecord {
            generation: metadata.generation,
            digest: spec_digest.clone(),
            targets: bundle.spec.targets.clone(),
            keep_resources: bundle.spec.keep_resources,
            drift: bundle.spec.drift.clone(),
            target_digests: Vec::new(),
        })
    };
    let mut ops = vec![Op::PutContent {
        digest: spec_digest.clone(),
        body: content,
    }];
    let mut stored_spec = bundle.spec.clone();
    stored_spec.resources = Vec::new();
    let (stored_targets, spec_target_digests) =
        records::strip_targets(&stored_spec.targets, &mut ops);
    stored_spec.targets = stored_targets;
    let target_digests: Vec<String> = spec_target_digests.iter().flatten().cloned().collect();
    let record = BundleRecord {
        metadata: metadata.clone(),
        spec: stored_spec,
        spec_digest: spec_digest.clone(),
        spec_target_digests,
        live: live.as_ref().map(|live| live.stored(&mut ops)),
        owner: owner.map(str::to_string),
    };
    // Every write puts again all the content its record references (a paused bundle keeps an
    // older live revision), so the content collector never deletes content referenced since it
    // looked (see `workers::collect_content`).
    if let Some(live) = &record.live
        && !ops
            .iter()
            .any(|op| matches!(op, Op::PutContent { digest, .. } if *digest == live.digest))
    {
        let body = fleet.contents.get(&live.digest).ok_or_else(|| {
            ApiError::internal(format!(
                "content {} of bundle {name:?}'s live revision is not in memory",
                live.digest
            ))
        })?;
        ops.push(Op::PutContent {
            digest: live.digest.clone(),
            body: body.to_vec(),
        });
    }
    ops.push(records::put(records::BUNDLE, &name, &record));
    // Content the model must hold: every digest the ops put (the spec's and the targets').
    let contents = ops
        .iter()
        .filter_map(|op| match op {
            Op::PutContent { digest, body } => Some((digest.clone(), body.clone())),
            _ => None,
        })
        .collect();
    Ok(PreparedBundle {
        name,
        created: old_meta.is_none(),
        changed,
        ops,
        metadata,
        spec: bundle.spec,
        spec_digest,
        live,
        owner: owner.map(str::to_string),
        dependencies,
        target_digests,
        contents,
    })
}

impl PreparedBundle {
    /// The digest of the bundle's default content.
    pub fn spec_digest(&self) -> &str {
        &self.spec_digest
    }

    /// The bundle as the `dependsOn` cycle check sees it (for writes of several bundles at once).
    pub fn dependency_candidate(&self) -> crate::fleet::dependencies::CandidateBundle<'_> {
        crate::fleet::dependencies::CandidateBundle {
            name: &self.name,
            labels: &self.metadata.labels,
            dependencies: &self.dependencies,
        }
    }
}

/// The message for a `dependsOn` cycle, given as bundle names from a bundle back to itself.
pub fn dependency_cycle_error(cycle: &[String]) -> String {
    format!(
        "spec.dependsOn: {} is a cycle: each would wait for the next to be Ready, forever; remove one of these dependencies",
        cycle.join(" -> ")
    )
}

/// Applies a committed bundle write to memory; returns the bundle's ordinal. The caller releases
/// unreferenced content afterwards (`release_contents`).
pub fn apply_bundle(
    fleet: &mut crate::fleet::Fleet,
    prepared: PreparedBundle,
    revision: u64,
) -> ApiResult<u32> {
    for (digest, body) in prepared.contents {
        fleet.contents.entry(digest).or_insert_with(|| body.into());
    }
    let live_revision = match &prepared.live {
        Some(live) => {
            let resources: Vec<Value> = match fleet.contents.get(&live.digest) {
                Some(bytes) => serde_json::from_slice(bytes).map_err(ApiError::internal)?,
                None => Vec::new(),
            };
            Some(
                live_revision(
                    live.generation,
                    live.digest.clone(),
                    &resources,
                    &live.targets,
                    live.keep_resources,
                    &live.drift,
                )
                .map_err(ApiError::internal)?,
            )
        }
        None => None,
    };
    let mut metadata = prepared.metadata;
    metadata.resource_version = Some(revision.to_string());
    Ok(fleet.upsert_bundle(BundleEntry {
        name: prepared.name,
        metadata,
        spec: prepared.spec,
        spec_digest: prepared.spec_digest,
        spec_target_digests: prepared.target_digests,
        live: live_revision,
        live_targets: prepared.live.map(|l| l.targets).unwrap_or_default(),
        owner: prepared.owner,
        dependencies: prepared.dependencies,
        targeted: Default::default(),
        counts: [0; 5],
        problems: Default::default(),
    }))
}

fn owned_error(name: &str, owner: Option<&str>) -> ApiError {
    match owner {
        Some(repo) => ApiError::Conflict(format!(
            "bundle {name:?} is rendered from GitRepo {repo:?}; change the repository (or delete the GitRepo) instead"
        )),
        None => ApiError::Conflict(format!(
            "bundle {name:?} already exists and was not created by this GitRepo; rename the folder (fleet.yaml `name`) or delete the bundle"
        )),
    }
}

async fn write_group(state: &SharedState, group: ClusterGroup, mode: Mode) -> ApiResult<Response> {
    let name = group.metadata.name.clone();
    validate_dns_subdomain(&name)
        .map_err(|e| ApiError::Unprocessable(format!("cluster group {e}")))?;
    validate_labels(&group.metadata.labels)?;
    let selector = Selector::from_api(&group.spec.selector)
        .map_err(|e| ApiError::Unprocessable(format!("spec.selector: {e}")))?;
    let now = now_seconds();
    let old = {
        let fleet = state.fleet.read();
        match fleet.groups.get(&name) {
            Some(old) => {
                if mode == Mode::Create {
                    return Err(exists_error(Kind::ClusterGroup, &name));
                }
                check_version(
                    &group.metadata.resource_version,
                    old.metadata.resource_version.as_deref(),
                    "the cluster group",
                )?;
                Some((old.metadata.clone(), old.selector != selector))
            }
            None => None,
        }
    };
    let changed = old.as_ref().is_none_or(|(_, changed)| *changed);
    let mut metadata = fresh_metadata(&group.metadata, old.as_ref().map(|(m, _)| m), changed, now);
    let record = GroupRecord {
        metadata: metadata.clone(),
        spec: group.spec.clone(),
    };
    let revision = commit(state, vec![records::put(records::GROUP, &name, &record)]).await?;
    metadata.resource_version = Some(revision.to_string());
    let mut fleet = state.fleet.write();
    fleet.upsert_group(&name, metadata, selector);
    let entry = fleet
        .groups
        .get(&name)
        .ok_or_else(|| ApiError::internal("group vanished"))?;
    respond(old.is_none(), &render::group(&fleet, &name, entry))
}

/// The longest token lifetime a write accepts: past it, "never expires" (no ttl) says it
/// better, and every expiry stays far inside what RFC 3339 can write (year 9999).
/// A year is humantime's (365.25 days), so `ttl: 100y` is accepted.
const MAX_TOKEN_TTL_SECONDS: u64 = 100 * 31_557_600;

async fn write_token(
    state: &SharedState,
    token: RegistrationToken,
    mode: Mode,
) -> ApiResult<Response> {
    let mut name = token.metadata.name.clone();
    if name.is_empty() {
        name = format!("token-{}", &new_secret()[..10]);
    }
    validate_dns_label(&name)
        .map_err(|e| ApiError::Unprocessable(format!("registration token {e}")))?;
    validate_labels(&token.metadata.labels)?;
    validate_labels(&token.spec.labels).map_err(|e| {
        ApiError::Unprocessable(e.to_string().replace("metadata.labels", "spec.labels"))
    })?;
    let now = now_seconds();
    let expires_at = match (&token.spec.ttl, &token.spec.expires_at) {
        (Some(_), Some(_)) => {
            return Err(ApiError::Unprocessable(
                "set either spec.ttl or spec.expiresAt, not both".into(),
            ));
        }
        (Some(ttl), None) => {
            let parsed = humantime::parse_duration(ttl).map_err(|e| {
                ApiError::Unprocessable(format!("spec.ttl {ttl:?}: {e}; write e.g. 1h or 30m"))
            })?;
            if parsed.as_secs() > MAX_TOKEN_TTL_SECONDS {
                return Err(ApiError::Unprocessable(format!(
                    "spec.ttl {ttl:?} is longer than 100 years; leave spec.ttl unset for a token that never expires"
                )));
            }
            Some(now + parsed.as_secs().max(1))
        }
        (None, Some(at)) => {
            let parsed = humantime::parse_rfc3339_weak(at).map_err(|e| {
                ApiError::Unprocessable(format!(
                    "spec.expiresAt {at:?}: {e}; write an RFC 3339 time such as 2030-01-01T00:00:00Z"
                ))
            })?;
            let seconds = parsed
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            if seconds > now.saturating_add(MAX_TOKEN_TTL_SECONDS) {
                return Err(ApiError::Unprocessable(format!(
                    "spec.expiresAt {at:?} is more than 100 years away; leave it unset for a token that never expires"
                )));
            }
            Some(seconds)
        }
        (None, None) => None,
    };
    if token.spec.max_uses == Some(0) {
        return Err(ApiError::Unprocessable(
            "spec.maxUses 0 would refuse every registration; give 1 or more, or leave it unset for no limit".into(),
        ));
    }
    let old = {
        let fleet = state.fleet.read();
        match fleet.tokens.get(&name) {
            Some(old) => {
                if mode == Mode::Create {
                    return Err(exists_error(Kind::RegistrationToken, &name));
                }
                check_version(
                    &token.metadata.resource_version,
                    old.metadata.resource_version.as_deref(),
                    "the registration token",
                )?;
                Some((old.metadata.clone(), old.secret_hash, old.uses))
            }
            None => None,
        }
    };
    // A new token gets a secret; replacing a token keeps its secret and its use count.
    let secret = old.is_none().then(new_secret);
    let secret_hash = match (&secret, &old) {
        (Some(secret), _) => hash_secret(secret),
        (None, Some((_, hash, _))) => *hash,
        (None, None) => return Err(ApiError::internal("token has neither old nor new secret")),
    };
    let mut spec = token.spec.clone();
    spec.ttl = None;
    spec.expires_at = None;
    let mut metadata = fresh_metadata(
        &ObjectMeta {
            name: name.clone(),
            ..token.metadata.clone()
        },
        old.as_ref().map(|(m, _, _)| m),
        true,
        now,
    );
    let record = TokenRecord {
        metadata: metadata.clone(),
        spec: spec.clone(),
        secret_hash: hex::encode(secret_hash),
        expires_at,
    };
    let revision = commit(state, vec![records::put(records::TOKEN, &name, &record)]).await?;
    metadata.resource_version = Some(revision.to_string());
    let entry = TokenEntry {
        metadata,
        spec,
        secret_hash,
        expires_at,
        uses: old.as_ref().map_or(0, |(_, _, uses)| *uses),
        reserved: 0,
    };
    let rendered = render::token(&entry, now, secret.map(|secret| format!("{name}.{secret}")));
    let mut fleet = state.fleet.write();
    let reserved = fleet.tokens.get(&name).map_or(0, |t| t.reserved);
    fleet.tokens.insert(name, TokenEntry { reserved, ..entry });
    respond(old.is_none(), &rendered)
}

async fn write_cluster(state: &SharedState, cluster: Cluster, mode: Mode) -> ApiResult<Response> {
    let name = cluster.metadata.name.clone();
    if mode == Mode::Create {
        return Err(ApiError::MethodNotAllowed(
            "clusters are created by agent registration: create a token with `flotilla token create` and run `flotilla agent --token …`".into(),
        ));
    }
    validate_labels(&cluster.metadata.labels)?;
    let (created, generation) = {
        let fleet = state.fleet.read();
        let (_, existing) = fleet.cluster_by_name(&name).ok_or_else(|| {
            ApiError::NotFound(format!(
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
        .ok_or_else(|| ApiError::Conflict(format!("cluster {name:?} was deleted meanwhile")))?;
    fleet.relabel_cluster(ordinal, &cluster.metadata.labels, generation, revision);
    let rendered =
        render::cluster(&fleet, ordinal).ok_or_else(|| ApiError::internal("cluster vanished"))?;
    respond(false, &rendered)
}

pub async fn delete(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((plural, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    require_admin(&state, &headers)?;
    let kind = kind_of(&plural)?;
    let _serialized = state.admin_lock.lock().await;
    let exists = {
        let fleet = state.fleet.read();
        match kind {
            Kind::Cluster => fleet.cluster_by_name(&name).is_some(),
            Kind::Bundle => match fleet.bundle_by_name(&name) {
                Some((_, bundle)) if bundle.owner.is_some() => {
                    return Err(owned_error(&name, bundle.owner.as_deref()));
                }
                found => found.is_some(),
            },
            Kind::ClusterGroup => fleet.groups.contains_key(&name),
            Kind::RegistrationToken => fleet.tokens.contains_key(&name),
            Kind::GitRepo => fleet.gitrepos.contains_key(&name),
            Kind::Secret => fleet.secrets.contains_key(&name),
        }
    };
    if !exists {
        return Err(ApiError::NotFound(format!("{kind} {name:?} not found")));
    }
    let ops = match kind {
        Kind::Cluster => vec![
            records::delete(records::CLUSTER, &name),
            records::delete(records::CREDENTIAL, &name),
            records::delete(records::REPORT, &name),
        ],
        Kind::Bundle => vec![records::delete(records::BUNDLE, &name)],
        Kind::ClusterGroup => vec![records::delete(records::GROUP, &name)],
        Kind::RegistrationToken => vec![
            records::delete(records::TOKEN, &name),
            Op::DeleteCounter {
                counter: records::token_uses_counter(&name),
            },
        ],
        Kind::GitRepo => sources::delete_gitrepo_ops(&state.fleet.read(), &name),
        Kind::Secret => vec![records::delete(records::SECRET, &name)],
    };
    commit(&state, ops).await?;
    let mut fleet = state.fleet.write();
    match kind {
        Kind::Cluster => {
            if let Some((ordinal, _)) = fleet.cluster_by_name(&name) {
                fleet.remove_cluster(ordinal);
            }
        }
        Kind::Bundle => {
            fleet.remove_bundle(&name);
            release_contents(&mut fleet);
        }
        Kind::ClusterGroup => fleet.remove_group(&name),
        Kind::RegistrationToken => {
            fleet.tokens.remove(&name);
        }
        Kind::GitRepo => {
            sources::remove_gitrepo(&mut fleet, &name);
            state.gitops.forget(&name);
        }
        Kind::Secret => {
            fleet.secrets.remove(&name);
        }
    }
    tracing::info!(%kind, %name, "deleted");
    Ok(Json(serde_json::json!({
        "kind": "Status",
        "status": "Success",
        "message": format!("{kind} {name:?} deleted"),
    }))
    .into_response())
}
