//! `/api/v1`: create, replace, get and delete for every kind (lists are `list`). Translation
//! only: reads render memory (`crate::view`); writes decode the document, call the write
//! service (`crate::writes`) and turn its answer into a response.

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use flotilla_api::{API_VERSION, Kind, List};
use serde_json::Value;

use super::{
    Path,
    body::{RawBody, typed},
};
use crate::{
    auth::{bearer, secret_matches},
    error::{ApiError, ApiResult},
    metrics::ResultLabel,
    state::{SharedState, now_seconds},
    view,
    writes::{self, Mode, Written},
};

pub fn require_admin(state: &SharedState, headers: &HeaderMap) -> ApiResult<()> {
    let token = bearer(headers.get(header::AUTHORIZATION)).unwrap_or("");
    if token.is_empty() || !secret_matches(token, &state.admin_token_hash) {
        return Err(ApiError::Unauthorized(
            "missing or invalid admin token; pass --token or set FLOTILLA_TOKEN (the server wrote one to <data-dir>/admin-token)".into(),
        ));
    }
    Ok(())
}

pub(super) fn kind_of(plural: &str) -> ApiResult<Kind> {
    Kind::ALL
        .into_iter()
        .find(|kind| kind.plural() == plural)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "no resource collection {plural:?}; use one of clusters, clustergroups, bundles, registrationtokens"
            ))
        })
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
            serde_json::to_value(view::cluster(&fleet, ordinal).ok_or_else(not_found)?)
        }
        Kind::Bundle => {
            let (_, bundle) = fleet.bundle_by_name(&name).ok_or_else(not_found)?;
            serde_json::to_value(view::bundle(&fleet, bundle))
        }
        Kind::ClusterGroup => {
            let group = fleet.groups().get(&name).ok_or_else(not_found)?;
            serde_json::to_value(view::group(&fleet, &name, group))
        }
        Kind::RegistrationToken => {
            let token = fleet.tokens().get(&name).ok_or_else(not_found)?;
            serde_json::to_value(view::token(token, now_seconds(), None))
        }
        Kind::GitRepo => serde_json::to_value(view::gitrepo(&fleet, &name).ok_or_else(not_found)?),
        Kind::Secret => serde_json::to_value(view::secret(&fleet, &name).ok_or_else(not_found)?),
    }
    .map_err(ApiError::internal)?;
    Ok(Json(value).into_response())
}

/// `GET /api/v1/bundles/{name}/revisions`: the bundle's retained revisions, newest first.
pub async fn bundle_revisions(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    require_admin(&state, &headers)?;
    let fleet = state.fleet.read();
    let (_, bundle) = fleet
        .bundle_by_name(&name)
        .ok_or_else(|| ApiError::NotFound(format!("{} {name:?} not found", Kind::Bundle)))?;
    let items = view::bundle_revisions(bundle);
    Ok(Json(List {
        total: Some(items.len() as u64),
        items,
        continue_token: None,
    })
    .into_response())
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

/// Which kind a document is, checked against the route it came to: 400 for a document that is
/// not one flotilla serves here.
fn document_kind(
    document: &Value,
    expected: Option<Kind>,
    url_name: Option<&str>,
) -> ApiResult<Kind> {
    let Value::Object(object) = document else {
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
        .unwrap_or("");
    if let Some(url_name) = url_name
        && url_name != name
    {
        return Err(ApiError::BadRequest(format!(
            "metadata.name {name:?} does not match the name in the URL {url_name:?}"
        )));
    }
    Ok(kind)
}

async fn write_inner(
    state: &SharedState,
    expected: Option<Kind>,
    url_name: Option<String>,
    document: Value,
    mode: Mode,
) -> ApiResult<Response> {
    let kind = document_kind(&document, expected, url_name.as_deref())?;
    match kind {
        Kind::Bundle => respond(writes::bundles::write(state, typed(document)?, mode).await?),
        Kind::ClusterGroup => respond(writes::groups::write(state, typed(document)?, mode).await?),
        Kind::RegistrationToken => {
            respond(writes::tokens::write(state, typed(document)?, mode).await?)
        }
        Kind::Cluster => respond(writes::clusters::write(state, typed(document)?, mode).await?),
        Kind::GitRepo => {
            respond(writes::sources::write_gitrepo(state, typed(document)?, mode).await?)
        }
        Kind::Secret => {
            respond(writes::sources::write_secret(state, typed(document)?, mode).await?)
        }
    }
}

/// 201 with the object for a create, 200 for a replace.
fn respond<T: serde::Serialize>(written: Written<T>) -> ApiResult<Response> {
    let status = if written.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(&written.object)).into_response())
}

pub async fn delete(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((plural, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    require_admin(&state, &headers)?;
    let kind = kind_of(&plural)?;
    writes::delete(&state, kind, &name).await?;
    tracing::info!(%kind, %name, "deleted");
    Ok(Json(serde_json::json!({
        "kind": "Status",
        "status": "Success",
        "message": format!("{kind} {name:?} deleted"),
    }))
    .into_response())
}
