//! HTTP routes by audience: `/api/v1` (admins, CLI, automation), `/agent/v1` (agents),
//! `/metrics` and `/healthz`.

pub mod admin;
pub mod agent;
pub mod body;
pub mod openapi;
pub mod render;
pub mod sources;

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::Instant,
};

use axum::{
    Router,
    extract::{DefaultBodyLimit, MatchedPath, Request, State},
    http::{HeaderValue, Method, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};

use rand::RngExt;

use crate::{
    error::ApiError,
    metrics::{method_label, route_label},
    state::SharedState,
};

/// The whole HTTP application.
pub fn app(state: SharedState) -> Router {
    let max_body = state.settings.max_body_bytes;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(openapi::document))
        .route("/api/v1/apply", post(admin::apply))
        .route(
            "/api/v1/webhooks/git",
            post(crate::gitops::webhook::receive),
        )
        .route("/api/v1/{plural}", get(admin::list).post(admin::create))
        .route(
            "/api/v1/{plural}/{name}",
            get(admin::get).put(admin::replace).delete(admin::delete),
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
        .layer(middleware::from_fn(finish_writes))
        // Outermost, and applied to every route and the fallback after routing, so the matched
        // route template is known.
        .layer(middleware::from_fn_with_state(state.clone(), track_http))
        .with_state(state)
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
            ApiError::internal(error).into_response()
        }
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
async fn healthz(State(state): State<SharedState>) -> Response {
    let store = state.store.clone();
    let pinged = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::task::spawn_blocking(move || store.ping()),
    )
    .await;
    match pinged {
        Ok(Ok(Ok(()))) => "ok\n".into_response(),
        Ok(Ok(Err(error))) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("store unreachable: {error}\n"),
        )
            .into_response(),
        Ok(Err(_)) | Err(_) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "store unreachable: no answer within 5 s\n",
        )
            .into_response(),
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
