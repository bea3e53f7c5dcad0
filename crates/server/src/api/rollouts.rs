//! Rollout routes: `GET /api/v1/bundles/{name}/rollout` and `POST …/rollout/{verb}` (pause,
//! resume, abort, undo). Translation only: the write service decides.

use axum::{
    Json,
    extract::{Path, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
};
use flotilla_api::RolloutUndo;

use super::{admin::require_admin, body::RawBody};
use crate::{
    error::{ApiError, ApiResult},
    state::SharedState,
    writes::rollouts::{self, Verb},
};

/// `GET /api/v1/bundles/{name}/rollout`
pub async fn status(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    require_admin(&state, &headers)?;
    Ok(Json(rollouts::status(&state, &name)?).into_response())
}

/// `POST /api/v1/bundles/{name}/rollout/{verb}`
pub async fn verb(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((name, verb)): Path<(String, String)>,
    body: RawBody,
) -> ApiResult<Response> {
    require_admin(&state, &headers)?;
    let status = match verb.as_str() {
        "pause" => rollouts::apply_verb(&state, &name, Verb::Pause).await?,
        "resume" => rollouts::apply_verb(&state, &name, Verb::Resume).await?,
        "abort" => rollouts::apply_verb(&state, &name, Verb::Abort).await?,
        "undo" => {
            let undo: RolloutUndo = if body.bytes.iter().all(u8::is_ascii_whitespace) {
                RolloutUndo::default()
            } else {
                serde_json::from_slice(&body.bytes).map_err(|error| {
                    ApiError::BadRequest(format!(
                        "the undo body is not valid JSON of the form {{\"toRevision\": N}}: {error}"
                    ))
                })?
            };
            rollouts::undo(&state, &name, undo.to_revision).await?
        }
        other => {
            return Err(ApiError::NotFound(format!(
                "no rollout verb {other:?}; use pause, resume, abort or undo"
            )));
        }
    };
    Ok(Json(status).into_response())
}
