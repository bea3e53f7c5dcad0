//! The one axum fallback handler: records the request, then routes by path segments by hand
//! (`/api/v1/namespaces/{name}` and `/api/v1/namespaces/{ns}/{plural}` differ only in segment
//! count, which route templates express badly).
//!
//! Paths: `/version`, `/healthz`|`/readyz`|`/livez`, `/api`, `/apis`, `/apis/{g}`, and per group
//! version (`/api/v1` or `/apis/{g}/{v}`): `[/namespaces/{ns}]/{plural}[/{name}[/status]]`.

use std::sync::{Arc, Mutex, PoisonError};

use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State as AxumState};
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::RecordedRequest;
use super::discovery::{self, ResourceType};
use super::errors::ApiError;
use super::selector::{FieldSelector, LabelSelector};
use super::store::{Apply, State};

const APPLY_PATCH: &str = "application/apply-patch+yaml";

/// A successful answer.
enum Reply {
    Json(u16, Value),
    Text(&'static str),
}

/// One request, as the routes see it.
struct Call<'a> {
    method: &'a Method,
    /// Query parameters, URL-decoded.
    params: Vec<(String, String)>,
    content_type: Option<&'a str>,
    body: &'a Bytes,
}

impl Call<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn is_get(&self) -> bool {
        *self.method == Method::GET
    }

    fn method_not_allowed(&self) -> ApiError {
        ApiError::method_not_allowed(self.method.as_str())
    }
}

pub async fn handle(AxumState(state): AxumState<Arc<Mutex<State>>>, request: Request) -> Response {
    let method = request.method().clone();
    let uri = request.uri().clone();
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let body = axum::body::to_bytes(request.into_body(), 64 << 20)
        .await
        .unwrap_or_default();

    let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
    let result = if state.available {
        route(&mut state, &method, &uri, content_type.as_deref(), &body)
    } else {
        Err(ApiError::unavailable())
    };
    let (status, response) = match result {
        Ok(Reply::Json(code, value)) => (code, json_response(code, &value)),
        Ok(Reply::Text(text)) => (200, text.into_response()),
        Err(error) => (error.code, json_response(error.code, &error.body())),
    };
    state.requests.push(RecordedRequest {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().unwrap_or("").to_string(),
        content_type,
        status,
    });
    response
}

fn json_response(code: u16, value: &Value) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(value.to_string()),
    )
        .into_response()
}

fn route(
    state: &mut State,
    method: &Method,
    uri: &Uri,
    content_type: Option<&str>,
    body: &Bytes,
) -> Result<Reply, ApiError> {
    let params = match Query::<Vec<(String, String)>>::try_from_uri(uri) {
        Ok(Query(pairs)) => pairs,
        Err(e) => return Err(ApiError::bad_request(format!("invalid query: {e}"))),
    };
    let call = Call {
        method,
        params,
        content_type,
        body,
    };
    let read_only = |reply: Reply| {
        if call.is_get() {
            Ok(reply)
        } else {
            Err(call.method_not_allowed())
        }
    };
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["version"] => read_only(Reply::Json(200, discovery::version())),
        ["healthz" | "readyz" | "livez"] => read_only(Reply::Text("ok")),
        ["api"] => read_only(Reply::Json(200, discovery::core_versions())),
        ["apis"] => read_only(Reply::Json(
            200,
            discovery::group_list(&state.resource_types()),
        )),
        ["apis", group] => {
            let types = state.resource_types();
            let groups = discovery::groups(&types);
            let (name, versions) = groups
                .iter()
                .find(|(g, _)| g == group)
                .ok_or_else(ApiError::no_such_resource)?;
            read_only(Reply::Json(200, discovery::group(name, versions)))
        }
        ["api", version, rest @ ..] => resources(state, &call, "", version, rest),
        ["apis", group, version, rest @ ..] => resources(state, &call, group, version, rest),
        _ => Err(ApiError::no_such_resource()),
    }
}

/// Everything under one group version: `rest` is the path after `/api/v1` or `/apis/{g}/{v}`.
fn resources(
    state: &mut State,
    call: &Call<'_>,
    group: &str,
    version: &str,
    rest: &[&str],
) -> Result<Reply, ApiError> {
    let types = state.resource_types();
    let served: Vec<&ResourceType> = types
        .iter()
        .filter(|t| t.group == group && t.version == version)
        .collect();
    if served.is_empty() {
        return Err(ApiError::no_such_resource());
    }
    let (namespace, plural, tail) = match rest {
        [] if call.is_get() => {
            let group_version = if group.is_empty() {
                version.to_string()
            } else {
                format!("{group}/{version}")
            };
            return Ok(Reply::Json(
                200,
                discovery::resource_list(&group_version, &served),
            ));
        }
        [] => return Err(call.method_not_allowed()),
        ["namespaces", namespace, plural, tail @ ..] => (Some(*namespace), *plural, tail),
        [plural, tail @ ..] => (None, *plural, tail),
    };
    let t = served
        .iter()
        .find(|t| t.plural == plural)
        .copied()
        .ok_or_else(ApiError::no_such_resource)?;
    let (name, subresource) = match tail {
        [] => (None, None),
        [name] => (Some(*name), None),
        [name, subresource] => (Some(*name), Some(*subresource)),
        _ => return Err(ApiError::no_such_resource()),
    };
    if namespace.is_some() != t.namespaced && (namespace.is_some() || name.is_some()) {
        // A namespaced path to a cluster-scoped type, or a cluster path to one namespaced object.
        return Err(ApiError::no_such_resource());
    }
    if let Some(subresource) = subresource {
        return match (subresource, name) {
            ("status", Some(name)) if t.status_subresource && call.is_get() => {
                Ok(Reply::Json(200, state.get(t, namespace, name)?))
            }
            ("status", _) if t.status_subresource => Err(call.method_not_allowed()),
            _ => Err(ApiError::no_such_resource()),
        };
    }
    let allows = |verb: &str| t.verbs.iter().any(|v| v == verb);
    match (call.method.as_str(), name) {
        ("GET", Some(name)) => Ok(Reply::Json(200, state.get(t, namespace, name)?)),
        ("GET", None) => list(state, call, t, namespace),
        ("PATCH", Some(name)) if allows("patch") => apply(state, call, t, namespace, name),
        ("DELETE", Some(name)) if allows("delete") => {
            // DeleteParams travel in the body; `dryRun: ["All"]` may be there or in the query.
            let options: Value = serde_json::from_slice(call.body).unwrap_or(Value::Null);
            let in_body = options["dryRun"]
                .as_array()
                .is_some_and(|d| d.iter().any(|v| v == "All"));
            let dry_run = in_body || call.param("dryRun") == Some("All");
            let preconditions = &options["preconditions"];
            Ok(Reply::Json(
                200,
                state.delete(t, namespace, name, dry_run, preconditions)?,
            ))
        }
        _ => Err(call.method_not_allowed()),
    }
}

/// Server-side apply: `PATCH` with `application/apply-patch+yaml`, `fieldManager`, `force`, `dryRun`.
fn apply(
    state: &mut State,
    call: &Call<'_>,
    t: &ResourceType,
    namespace: Option<&str>,
    name: &str,
) -> Result<Reply, ApiError> {
    let content_type = call.content_type.unwrap_or("");
    if !content_type.starts_with(APPLY_PATCH) {
        return Err(ApiError::unsupported_media_type(content_type));
    }
    let Some(manager) = call.param("fieldManager").filter(|m| !m.is_empty()) else {
        return Err(ApiError::bad_request(
            "fieldManager is required for apply requests",
        ));
    };
    // kube sends JSON, which is valid YAML; the stand-in reads only JSON.
    let body: Value = serde_json::from_slice(call.body).map_err(|e| {
        ApiError::bad_request(format!(
            "error decoding apply patch (the stand-in reads JSON only): {e}"
        ))
    })?;
    let force = call.param("force") == Some("true");
    let dry_run = call.param("dryRun") == Some("All");
    let (object, created) = state.apply(Apply {
        resource: t,
        namespace,
        name,
        body,
        manager,
        force,
        dry_run,
    })?;
    Ok(Reply::Json(if created { 201 } else { 200 }, object))
}

/// LIST with `labelSelector`, `fieldSelector` and `limit`/`continue` (the token is an offset).
fn list(
    state: &State,
    call: &Call<'_>,
    t: &ResourceType,
    namespace: Option<&str>,
) -> Result<Reply, ApiError> {
    if call.param("watch").is_some_and(|w| w == "true" || w == "1") {
        return Err(ApiError::bad_request(
            "watch is not implemented by the stand-in",
        ));
    }
    let labels = LabelSelector::parse(call.param("labelSelector").unwrap_or(""))
        .map_err(ApiError::bad_request)?;
    let fields = FieldSelector::parse(call.param("fieldSelector").unwrap_or(""))
        .map_err(ApiError::bad_request)?;
    let mut items = state.list(t, namespace, &labels, &fields);
    let mut metadata = json!({"resourceVersion": state.current_resource_version()});
    let offset: usize = match call.param("continue").filter(|c| !c.is_empty()) {
        Some(token) => token
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid continue token {token:?}")))?,
        None => 0,
    };
    items.drain(..offset.min(items.len()));
    let limit = call
        .param("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    if let Some(limit) = limit
        && items.len() > limit
    {
        metadata["continue"] = json!((offset + limit).to_string());
        metadata["remainingItemCount"] = json!(items.len() - limit);
        items.truncate(limit);
    }
    let kind = format!("{}List", t.kind);
    Ok(Reply::Json(
        200,
        json!({"kind": kind, "apiVersion": t.api_version(), "metadata": metadata, "items": items}),
    ))
}
