//! `/api/v1`: create, replace, get and delete for every kind (lists are `list`). Translation
//! only: reads render memory (`crate::view`); writes decode the document, call the write
//! service (`crate::writes`) and turn its answer into a response.

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use flotilla_api::{
    API_VERSION, Kind, List,
    dry_run::{SECRET_VALUE_CHANGED, SECRET_VALUE_KEPT, masked_secret_view, without_server_fields},
};
use serde_json::Value;

use super::{
    Path, Query,
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
    Ok(Json(current(&state, kind, &name)?).into_response())
}

/// The object memory holds, as a GET returns it.
fn current(state: &SharedState, kind: Kind, name: &str) -> ApiResult<Value> {
    let name = name.to_string();
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
    Ok(value)
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

/// The query of `POST /api/v1/apply`.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ApplyQuery {
    /// `All`: a server-side dry run, as Kubernetes' `dryRun=All`. The write service validates
    /// the document and plans the write against the current objects, then commits nothing and
    /// changes nothing; the answer is the object as it would be written (without status or
    /// server-set metadata), 201 if it would be created, otherwise 200, and the header
    /// `Flotilla-Dry-Run` says `created`, `configured` or `unchanged`.
    #[param(pattern = "^All$")]
    dry_run: Option<String>,
}

/// The response header naming what a dry-run apply would do.
pub const DRY_RUN_HEADER: &str = "flotilla-dry-run";

/// `POST /api/v1/apply`: creates or replaces a document of any kind (or, with `dryRun=All`,
/// says what doing so would do).
pub async fn apply(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Query(query): Query<ApplyQuery>,
    body: RawBody,
) -> ApiResult<Response> {
    require_admin(&state, &headers)?;
    let dry_run = match query.dry_run.as_deref() {
        None | Some("") => false,
        Some("All") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "invalid dryRun {other:?}; the only value is All (or leave it out)"
            )));
        }
    };
    let document = body.document()?;
    if dry_run {
        return dry_run_apply(&state, document).await;
    }
    write(&state, None, None, document, Mode::Upsert).await
}

/// A server-side dry run of an apply: the same write, stopped at its commit
/// (`writes::dry_run`), answered with the object as it would be and the verb kubectl prints.
async fn dry_run_apply(state: &SharedState, document: Value) -> ApiResult<Response> {
    let kind = document_kind(&document, None, None)?;
    let object = normalized(kind, &document)?;
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let live = match current(state, kind, &name) {
        Ok(live) => Some(live),
        Err(ApiError::NotFound(_)) => None,
        Err(error) => return Err(error),
    };
    writes::dry_run(write_inner(state, None, None, document, Mode::Upsert)).await?;
    // A Secret's values never go out: both sides show each key's value masked, marked where
    // the new one differs from the stored one.
    let (object, live) = if kind == Kind::Secret {
        let fleet = state.fleet.read();
        let stored = fleet
            .secrets()
            .get(&name)
            .map(|entry| &entry.spec.string_data);
        (masked_secret(object, stored), live.map(masked_secret_view))
    } else {
        (object, live)
    };
    let verb = match &live {
        None => "created",
        Some(live)
            if without_server_fields(live.clone()) == without_server_fields(object.clone()) =>
        {
            "unchanged"
        }
        Some(_) => "configured",
    };
    let status = if live.is_none() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        [(DRY_RUN_HEADER, verb)],
        Json(without_server_fields(object)),
    )
        .into_response())
}

/// A Secret document with each value of `spec.stringData` replaced by a marker: kept (the
/// stored value, compared by digest) or changed.
fn masked_secret(
    mut document: Value,
    stored: Option<&std::collections::BTreeMap<String, String>>,
) -> Value {
    use sha2::{Digest, Sha256};
    let same = |key: &str, value: &str| {
        stored
            .and_then(|stored| stored.get(key))
            .is_some_and(|old| Sha256::digest(old) == Sha256::digest(value))
    };
    if let Some(Value::Object(given)) = document.pointer_mut("/spec/stringData") {
        for (key, value) in given.iter_mut() {
            let marker = match value.as_str() {
                Some(text) if same(key, text) => SECRET_VALUE_KEPT,
                _ => SECRET_VALUE_CHANGED,
            };
            *value = Value::from(marker);
        }
    }
    document
}

/// The document as the server reads it: parsed into its kind's type and written back, so
/// unknown fields are dropped and defaults are what a write would store.
fn normalized(kind: Kind, document: &Value) -> ApiResult<Value> {
    fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(
        document: &Value,
    ) -> ApiResult<Value> {
        serde_json::to_value(typed::<T>(document.clone())?).map_err(ApiError::internal)
    }
    match kind {
        Kind::Cluster => round_trip::<flotilla_api::Cluster>(document),
        Kind::ClusterGroup => round_trip::<flotilla_api::ClusterGroup>(document),
        Kind::Bundle => round_trip::<flotilla_api::Bundle>(document),
        Kind::RegistrationToken => round_trip::<flotilla_api::RegistrationToken>(document),
        Kind::GitRepo => round_trip::<flotilla_api::GitRepo>(document),
        Kind::Secret => round_trip::<flotilla_api::Secret>(document),
    }
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
