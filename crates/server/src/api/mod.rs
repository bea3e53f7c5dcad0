//! HTTP routes by audience: `/api/v1` (admins, CLI, automation), `/agent/v1` (agents),
//! `/metrics` and `/healthz`.

pub mod admin;
pub mod agent;
pub mod body;
pub mod openapi;
pub mod render;

use axum::{
    Router,
    extract::{DefaultBodyLimit, State},
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use flotilla_api::ClusterState;

use crate::{error::ApiError, fleet::cluster_state_index, metrics::StateLabel, state::SharedState};

/// The whole HTTP application.
pub fn app(state: SharedState) -> Router {
    let max_body = state.settings.max_body_bytes;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(openapi::document))
        .route("/api/v1/apply", post(admin::apply))
        .route("/api/v1/{plural}", get(admin::list).post(admin::create))
        .route(
            "/api/v1/{plural}/{name}",
            get(admin::get).put(admin::replace).delete(admin::delete),
        )
        .route(flotilla_api::agent::REGISTER_PATH, post(agent::register))
        .route(flotilla_api::agent::SYNC_PATH, post(agent::sync))
        .route(
            &format!("{}/{{digest}}", flotilla_api::agent::CONTENT_PATH),
            get(agent::content),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint; see /api/v1/openapi.json for the API".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed(
        "method not allowed on this endpoint; see /api/v1/openapi.json".into(),
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn metrics(State(state): State<SharedState>) -> Response {
    {
        let fleet = state.fleet.read();
        for cluster_state in [
            ClusterState::Pending,
            ClusterState::Online,
            ClusterState::Offline,
        ] {
            state
                .metrics
                .clusters
                .get_or_create(&StateLabel {
                    state: cluster_state.as_str(),
                })
                .set(fleet.cluster_counts[cluster_state_index(cluster_state)] as i64);
        }
        state.metrics.bundles.set(fleet.bundle_names.len() as i64);
    }
    let mut response = state.metrics.encode().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}
