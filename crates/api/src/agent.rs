//! The agent protocol, served under `/agent/v1`.
//!
//! - `POST /agent/v1/register` with a [`RegisterRequest`] returns a [`RegisterResponse`].
//! - `POST /agent/v1/sync` with a [`SyncRequest`] (bearer: the cluster credential) returns
//!   `204 No Content` when the agent's etag is current and nothing else needs saying, or `200` with a
//!   [`SyncResponse`].
//! - `GET /agent/v1/content/{digest}` returns the manifests with that digest (a JSON array), if the
//!   cluster's desired set references it. Content is immutable and cacheable forever.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::resource::{BundleState, ClusterFacts, Patch};

pub const REGISTER_PATH: &str = "/agent/v1/register";
pub const SYNC_PATH: &str = "/agent/v1/sync";
pub const CONTENT_PATH: &str = "/agent/v1/content";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterRequest {
    /// The registration token (`RegistrationToken`) the cluster was given.
    pub token: String,
    /// The cluster's name (a DNS label).
    pub name: String,
    /// A stable identity of the cluster's agent installation; re-registering with the same name and
    /// client id is idempotent, another client id for a taken name is refused.
    pub client_id: String,
    /// Labels the agent asks for; labels from the token win on conflict.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub facts: ClusterFacts,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegisterResponse {
    pub name: String,
    /// Bearer credential for `/agent/v1/sync` and content; the server keeps only its hash.
    pub credential: String,
}

/// One sync: heartbeat, status changes, and the question "is my desired set current?".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyncRequest {
    /// Etag of the desired set the agent holds (absent on first sync).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Digest of the agent's full report (facts + every bundle status) after this request.
    pub report_digest: String,
    /// Digest of the report this request's changes apply on top of (what the agent believes the
    /// server holds). Absent when `full` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_digest: Option<String>,
    /// When set, `bundles` holds every bundle status and `facts` is present: replace, don't merge.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub full: bool,
    /// Cluster facts, when they changed (or `full`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts: Option<ClusterFacts>,
    /// Bundle statuses that changed since `base_digest` (or all, when `full`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bundles: Vec<BundleReport>,
    /// Bundles the agent no longer holds (removed from its desired set and cleaned up).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
}

/// The state of one bundle deployment on the agent's cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BundleReport {
    pub bundle: String,
    /// The deployment id the state refers to (from [`DesiredBundle::deployment`]).
    pub deployment: String,
    pub state: BundleState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// A bounded list of objects that are not healthy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<ObjectProblem>,
    /// How many problem objects did not fit in `problems`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub more_problems: u32,
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

/// An object of a bundle that is not healthy, and why.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectProblem {
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncResponse {
    /// Etag of the desired set in `bundles` (or of the one the agent holds, when unchanged).
    pub etag: String,
    /// The full desired set; absent when the agent's etag is current.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundles: Option<Vec<DesiredBundle>>,
    /// The server's copy of the agent's report is stale: send `full` next time (now).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resync: bool,
    /// Content of bundles in `bundles` that the agent has not reported applying, by digest:
    /// small content rides along so the agent need not fetch it (it checks the digest as for
    /// fetched content, and fetches whatever is not here).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub contents: BTreeMap<String, InlineContent>,
}

/// Content inside a sync reply: exactly the bytes the content endpoint serves for its digest (a
/// JSON array of manifests).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = Vec<Object>)]
pub struct InlineContent(Box<serde_json::value::RawValue>);

impl InlineContent {
    /// Wraps stored content; `None` if it is not JSON.
    pub fn from_bytes(bytes: &[u8]) -> Option<InlineContent> {
        let text = std::str::from_utf8(bytes).ok()?;
        serde_json::value::RawValue::from_string(text.to_owned())
            .ok()
            .map(InlineContent)
    }

    pub fn bytes(&self) -> &[u8] {
        self.0.get().as_bytes()
    }
}

impl PartialEq for InlineContent {
    fn eq(&self, other: &InlineContent) -> bool {
        self.0.get() == other.0.get()
    }
}

/// One bundle the cluster must run.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DesiredBundle {
    pub name: String,
    /// Identifies this exact deployment (content digest + options); status reports refer to it.
    pub deployment: String,
    /// Content digest (`sha256:…`) of the bundle's manifests, fetched from the content endpoint.
    pub digest: String,
    #[serde(default)]
    pub options: DeployOptions,
}

/// How the agent customizes a bundle's manifests for its cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeployOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<Patch>,
    /// Values for the placeholders the manifests use (`cluster.name`, `cluster.labels.KEY`,
    /// `values.KEY`), resolved by the server for this cluster.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_resources: bool,
    #[serde(default, skip_serializing_if = "crate::DriftPolicy::is_default")]
    pub drift: crate::DriftPolicy,
}
