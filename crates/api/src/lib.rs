//! Wire types shared by the flotilla server, agent, CLI and simulator.
//!
//! API boundary: only types from this crate are serialized on the wire. Resources are
//! Kubernetes-style documents (`apiVersion`, `kind`, `metadata`, `spec`, `status`); the agent
//! protocol lives in [`agent`].

pub mod agent;
pub mod resource;
pub mod selector;

pub use resource::*;
pub use selector::{LabelSelector, LabelSelectorRequirement};

/// The `apiVersion` of every flotilla resource.
pub const API_VERSION: &str = "flotilla.dev/v1alpha1";

/// JSON error body returned by every flotilla endpoint, shaped like a Kubernetes `Status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// HTTP status code.
    pub code: u16,
    /// Machine-readable reason, e.g. `BadRequest`, `NotFound`, `Conflict`.
    pub reason: String,
    /// What went wrong and what to fix.
    pub message: String,
}

/// A page of resources, as returned by list endpoints (`{"items": [...]}`, like kubectl).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
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
