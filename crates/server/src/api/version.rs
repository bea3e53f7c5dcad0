//! `GET /api/v1/version`: the server's release, the commit it was built from and its store
//! kind, for `flotilla version`. Admin-authenticated like the rest of `/api/v1`: a build and
//! store description helps an attacker more than it helps anyone without a token.

use axum::{Json, extract::State, http::HeaderMap};
use flotilla_api::{ServerVersion, StoreKind};

use super::admin::require_admin;
use crate::{error::ApiResult, state::SharedState};

/// The release version of this build (the workspace's).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit this build came from (see `build.rs`): `unknown` outside a checkout.
pub const COMMIT: &str = env!("FLOTILLA_BUILD_COMMIT");

pub async fn version(
    State(state): State<SharedState>,
    headers: HeaderMap,
) -> ApiResult<Json<ServerVersion>> {
    require_admin(&state, &headers)?;
    Ok(Json(ServerVersion {
        version: VERSION.into(),
        commit: COMMIT.into(),
        store: if state.shared_store {
            StoreKind::Postgres
        } else {
            StoreKind::Embedded
        },
    }))
}
