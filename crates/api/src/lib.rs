//! Wire types shared by the flotilla server, agent, CLI and simulator.
//!
//! API boundary: only types from this crate are serialized on the wire. Resources are
//! Kubernetes-style documents (`apiVersion`, `kind`, `metadata`, `spec`, `status`); the agent
//! protocol lives in [`agent`].
//!
//! Every wire type also derives utoipa's `ToSchema`, which reads the same serde attributes, so the
//! server's OpenAPI document (`/api/v1/openapi.json`) is generated from these types and cannot
//! drift from what they serialize.

pub mod agent;
pub mod dry_run;
pub mod resource;
pub mod rollout;
pub mod selector;
pub mod version;

pub use resource::*;
pub use rollout::*;
pub use selector::{LabelSelector, LabelSelectorRequirement};
pub use version::{ServerVersion, StoreKind};

/// The `apiVersion` of every flotilla resource.
pub const API_VERSION: &str = "flotilla.dev/v1alpha1";

/// JSON error body returned by every flotilla endpoint, shaped like a Kubernetes `Status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// HTTP status code.
    pub code: u16,
    /// Machine-readable reason, e.g. `BadRequest`, `NotFound`, `Conflict`.
    pub reason: String,
    /// What went wrong and what to fix.
    pub message: String,
    /// For a document that breaks a rule (422): the field to fix, as Kubernetes puts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<ErrorDetails>,
}

/// Details of an error: what caused it, field by field (a Kubernetes `StatusDetails`).
#[derive(
    Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetails {
    pub causes: Vec<ErrorCause>,
}

/// One cause of an error (a Kubernetes `StatusCause`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorCause {
    /// The field path, e.g. `metadata.labels` or `spec.targets[2].clusterSelector`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// A page of resources, as returned by list endpoints (`{"items": [...]}`, like kubectl).
#[derive(
    Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct List<T> {
    pub items: Vec<T>,
    /// Opaque keyset cursor: pass it back as `continue` to get the next page.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "continue")]
    pub continue_token: Option<String>,
    /// Total number of items matching the filter (all pages), when the server knows it cheaply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
}
