//! `GET /api/v1/version`: what build a server runs and on which store, for `flotilla version`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The build a server runs, as `flotilla version` shows it beside the client's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerVersion {
    /// The release version, e.g. `0.4.0`.
    pub version: String,
    /// The git commit the binary was built from (`unknown` when built outside a checkout
    /// without `FLOTILLA_COMMIT`).
    pub commit: String,
    /// Where the server keeps its state.
    pub store: StoreKind,
}

/// Where a server keeps its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// SQLite in the data directory: one server.
    Embedded,
    /// A PostgreSQL database that several replicas share.
    Postgres,
}
