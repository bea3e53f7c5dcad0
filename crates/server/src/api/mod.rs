//! HTTP routes by audience: `/api/v1` (admins, CLI, automation), `/agent/v1` (agents),
//! `/metrics` and `/healthz`; and the one error shape: every 4xx and 5xx the application
//! produces is an `ErrorBody` in JSON (extractor rejections, body limits, unknown routes, wrong
//! methods, panics), see [`json_errors`].

pub mod admin;
pub mod agent;
pub mod body;
pub mod list;
pub mod openapi;
pub mod rollouts;
pub mod version;
pub mod watch;

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::Instant,
};

use axum::{
    Router,
    extract::{DefaultBodyLimit, FromRequestParts, MatchedPath, Request, State},
    http::{HeaderValue, Method, StatusCode, header, request::Parts},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};

use rand::RngExt;
use serde::de::DeserializeOwned;
use tower_http::catch_panic::CatchPanicLayer;

use crate::{
    error::ApiError,
    metrics::{method_label, route_label},
    state::SharedState,
};

/// The whole HTTP application.
pub fn app(state: SharedState) -> Router {
    let max_body = state.settings.max_body_bytes;
    let routes = Router::new()
        .route("/healthz", get(healthz))
        .route("/livez", get(livez))
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(openapi::document))
        .route("/api/v1/version", get(version::version))
        .route("/api/v1/apply", post(admin::apply))
        .route(
            "/api/v1/webhooks/git",
            post(crate::gitops::webhook::receive),
        )
        .route("/api/v1/{plural}", get(list::list).post(admin::create))
        .route(
            "/api/v1/{plural}/{name}",
            get(admin::get).put(admin::replace).delete(admin::delete),
        )
        .route(
            "/api/v1/bundles/{name}/revisions",
            get(admin::bundle_revisions),
        )
        .route("/api/v1/bundles/{name}/rollout", get(rollouts::status))
        .route(
            "/api/v1/bundles/{name}/rollout/{verb}",
            post(rollouts::verb),
        )
        .merge(
            Router::new()
                .route(flotilla_api::agent::REGISTER_PATH, post(agent::register))
                .route(flotilla_api::agent::SYNC_PATH, post(agent::sync))
                .route(
                    &format!("{}/{{digest}}", flotilla_api::agent::CONTENT_PATH),
                    get(agent::content),
                )
                .route_layer(middleware::from_fn_with_state(state.clone(), admit_agent)),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn(finish_writes));
    with_error_shape(routes)
        // Outermost, and applied to every route and the fallback after routing, so the matched
        // route template is known.
        .layer(middleware::from_fn_with_state(state.clone(), track_http))
        .with_state(state)
}

/// The one error shape around `routes`: a 4xx or 5xx that is not JSON already becomes an
/// `ErrorBody` ([`json_errors`]), and a panic anywhere inside a JSON 500 instead of a dropped
/// connection.
fn with_error_shape<S: Clone + Send + Sync + 'static>(routes: Router<S>) -> Router<S> {
    routes
        .layer(middleware::from_fn(json_errors))
        .layer(CatchPanicLayer::custom(panic_response))
}

/// Counts and times every request by route template, method and status class. Labels are
/// `&'static str`: nothing is allocated per request (see `metrics::route_label`).
async fn track_http(State(state): State<SharedState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = route_label(
        request
            .extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str),
    );
    let method = method_label(request.method());
    let response = next.run(request).await;
    state
        .metrics
        .observe_http(route, method, response.status(), started.elapsed());
    response
}

/// Runs every call that may write to its end in a task of its own, so a client that goes away
/// mid-call cannot cancel it. Handlers commit to the store and then apply the write to memory;
/// dropped while awaiting the commit, one would leave a durable write out of this replica's
/// model (its follower skips its own revisions), or a registration's reservation held for good.
/// Reads and agent syncs (which never await a commit) run inline: the hot path spawns nothing.
async fn finish_writes(request: Request, next: Next) -> Response {
    let method = request.method();
    if method == Method::GET
        || method == Method::HEAD
        || request.uri().path() == flotilla_api::agent::SYNC_PATH
    {
        return next.run(request).await;
    }
    match tokio::spawn(next.run(request)).await {
        Ok(response) => response,
        Err(error) => {
            tracing::error!(%error, "a request handler failed");
            ApiError::Internal(PANIC_MESSAGE.into()).into_response()
        }
    }
}

/// What a client is told when the server failed while answering (the details are logged).
const PANIC_MESSAGE: &str = "the server failed while answering this request (a bug, logged \
                             on the server); retry, and report it if it persists";

/// The JSON 500 for a panic caught by `CatchPanicLayer`.
fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    tracing::error!(panic = %message, "a request handler panicked");
    ApiError::Internal(PANIC_MESSAGE.into()).into_response()
}

/// Most bytes of a plain-text error body carried into the JSON message: axum's and tower's
/// rejection texts are a line; anything longer is cut rather than buffered.
const MAX_ERROR_TEXT: usize = 1024;

/// The one error shape: turns any 4xx or 5xx that is not JSON already (axum's rejections of
/// bodies it cannot read, a body over the limit, anything a layer answers on its own) into an
/// `ErrorBody` with the same status and headers, its text kept in the message after a hint
/// saying what to fix. Handlers' own errors are `ApiError`s and pass through untouched.
async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, MAX_ERROR_TEXT).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_string(),
        Err(_) => String::new(),
    };
    let hint = error_hint(status);
    let message = if text.is_empty() {
        hint.to_string()
    } else {
        format!("{hint}: {text}")
    };
    let mut json = ApiError::from_status(status, message).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            json.headers_mut().insert(name, value.clone());
        }
    }
    json
}

/// What to fix, by status, for errors that come without a message of ours.
fn error_hint(status: StatusCode) -> &'static str {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            "request body is larger than the server accepts (--max-body-bytes); send a smaller body"
        }
        StatusCode::REQUEST_TIMEOUT => {
            "the request was not received in time; send the whole request promptly and retry"
        }
        StatusCode::NOT_FOUND => "no such endpoint; see /api/v1/openapi.json for the API",
        StatusCode::METHOD_NOT_ALLOWED => {
            "method not allowed on this endpoint; see /api/v1/openapi.json"
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            "unsupported content type; send application/json (or YAML to /api/v1)"
        }
        status if status.is_server_error() => {
            "the server could not answer this request; retry, and report it if it persists"
        }
        _ => "the request is not valid; see /api/v1/openapi.json for the API",
    }
}

/// `axum::extract::Query` whose rejection is a JSON [`ApiError`] naming the parameter.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Query<T>, ApiError> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Query(value))
    }
}

/// `axum::extract::Path` whose rejection is a JSON [`ApiError`] naming the segment.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Path<T>, ApiError> {
        let axum::extract::Path(value) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(Path(value))
    }
}

/// Load shedding for agent calls: past `max_agent_requests` in flight (half that for
/// registrations, which write and fsync) the server answers 429 at once, before reading the body
/// or checking the credential, with a Retry-After spread over a few seconds so refused agents do
/// not come back together. Admin calls are never shed.
async fn admit_agent(State(state): State<SharedState>, request: Request, next: Next) -> Response {
    struct InFlight<'a>(&'a AtomicUsize);
    impl Drop for InFlight<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::Relaxed);
        }
    }
    let in_flight = InFlight(&state.agent_in_flight);
    let before = in_flight.0.fetch_add(1, Ordering::Relaxed);
    let limit = state.settings.max_agent_requests;
    let limit = if request.uri().path() == flotilla_api::agent::REGISTER_PATH {
        limit / 2
    } else {
        limit
    };
    if before >= limit {
        state.metrics.agent_requests_shed.inc();
        let retry_after_seconds = rand::rng().random_range(SHED_RETRY_SECONDS);
        return ApiError::Overloaded {
            retry_after_seconds,
        }
        .into_response();
    }
    let response = next.run(request).await;
    drop(in_flight);
    response
}

/// The Retry-After range of a shed agent call, in seconds.
const SHED_RETRY_SECONDS: std::ops::RangeInclusive<u32> = 2..=10;

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint; see /api/v1/openapi.json for the API".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed(
        "method not allowed on this endpoint; see /api/v1/openapi.json".into(),
    )
}

/// 200 "ok" while the server can reach its store; 503 saying why when it cannot (a load balancer
/// then sends agents and admins to another replica).
/// The process answers requests: what a liveness probe asks. Unlike `/healthz` it does not
/// look at the store, so a store outage (during which the server serves agents from memory)
/// restarts nothing.
async fn livez() -> &'static str {
    "ok\n"
}

async fn healthz(State(state): State<SharedState>) -> Response {
    let store = state.store.clone();
    let pinged = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::task::spawn_blocking(move || store.ping()),
    )
    .await;
    match pinged {
        Ok(Ok(Ok(()))) => "ok\n".into_response(),
        Ok(Ok(Err(error))) => {
            ApiError::Unavailable(format!("store unreachable: {error}")).into_response()
        }
        Ok(Err(_)) | Err(_) => {
            ApiError::Unavailable("store unreachable: no answer within 5 s".into()).into_response()
        }
    }
}

async fn metrics(State(state): State<SharedState>) -> Response {
    state.metrics.observe_fleet(&state.fleet.read());
    let mut response = state.metrics.encode().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use axum::{body::Body, http::Request};
    use flotilla_api::ErrorBody;
    use tower::ServiceExt;

    use super::*;

    async fn answer(router: Router, method: Method, path: &str) -> (StatusCode, String, String) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .expect("request");
        let response = router.oneshot(request).await.expect("infallible");
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (
            status,
            content_type,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    fn error_body(text: &str) -> ErrorBody {
        serde_json::from_str(text).expect("an ErrorBody")
    }

    async fn explode() -> &'static str {
        panic!("boom at {}", 42)
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_a_json_500_not_a_dropped_connection() {
        let router = with_error_shape(Router::new().route("/boom", get(explode)));
        let (status, content_type, text) = answer(router, Method::GET, "/boom").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            content_type.starts_with("application/json"),
            "{content_type}"
        );
        let body = error_body(&text);
        assert_eq!(body.code, 500);
        assert!(body.message.contains("retry"), "{body:?}");
        assert!(
            !body.message.contains("42"),
            "the panic stays in the log: {body:?}"
        );
    }

    #[tokio::test]
    async fn a_plain_text_error_from_any_layer_becomes_an_error_body_with_its_headers() {
        let router = with_error_shape(Router::new().route(
            "/teapot",
            get(|| async {
                (
                    StatusCode::REQUEST_TIMEOUT,
                    [(header::RETRY_AFTER, "3")],
                    "took too long",
                )
            }),
        ));
        let request = Request::builder()
            .uri("/teapot")
            .body(Body::empty())
            .expect("request");
        let response = router.oneshot(request).await.expect("infallible");
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(
            response
                .headers()
                .get(header::RETRY_AFTER)
                .map(|v| v.as_bytes()),
            Some(&b"3"[..])
        );
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        let body = error_body(&String::from_utf8_lossy(&body));
        assert_eq!(body.code, 408);
        assert_eq!(body.reason, "RequestTimeout");
        assert!(body.message.contains("took too long"), "{body:?}");
        assert!(body.message.contains("promptly"), "{body:?}");
    }

    #[tokio::test]
    async fn successes_and_json_errors_pass_through_untouched() {
        let router = with_error_shape(Router::new().route("/ok", get(|| async { "ok" })).route(
            "/conflict",
            get(|| async { ApiError::Conflict("taken".into()) }),
        ));
        let (status, _, text) = answer(router.clone(), Method::GET, "/ok").await;
        assert_eq!((status, text.as_str()), (StatusCode::OK, "ok"));
        let (status, _, text) = answer(router, Method::GET, "/conflict").await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(error_body(&text).message, "taken");
    }
}
