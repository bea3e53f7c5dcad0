//! A STAND-IN for the Kubernetes API server, for tests only: an in-process HTTP server that
//! speaks the subset of the Kubernetes API the agent's kube-rs driver uses, so the driver can be
//! tested with the real kube-rs client on a machine where no API server can run. It is not a
//! Kubernetes implementation; when it and a real cluster disagree, the real cluster is right
//! (wire formats: docs/dev/kube-rs-notes.md).
//!
//! What it implements (JSON only, HTTP/1.1 or 2, no authentication):
//! - `GET /version`, `/healthz`, and discovery: `/api`, `/api/v1`, `/apis`, `/apis/{g}`,
//!   `/apis/{g}/{v}` for a fixed set of built-in types (v1 namespaces, configmaps, secrets,
//!   services, serviceaccounts, pods, persistentvolumeclaims, nodes; apps/v1 deployments,
//!   statefulsets, daemonsets; batch/v1 jobs; rbac.authorization.k8s.io/v1 roles, rolebindings,
//!   clusterroles, clusterrolebindings; apiextensions.k8s.io/v1 customresourcedefinitions) plus
//!   the served versions of every *Established* CRD. Until a CRD is established its group is
//!   absent (404), so applying its CRs fails with 404 as on a real server.
//! - Server-side apply (`PATCH`, `application/apply-patch+yaml`, `fieldManager`, `force`,
//!   `dryRun=All`) with a per-manager approximation of SSA: the last config of each manager is
//!   kept; fields a manager stops applying are removed unless someone else owns them; maps merge
//!   recursively and lists are replaced whole; without `force`, changing a field another manager
//!   (or an `edit`) owns is a 409 conflict. `metadata.managedFields` is rendered in FieldsV1 form
//!   (`k:{"name":..}` for lists of items with a merge key). Checks: apiVersion/kind/name/
//!   namespace against the URL (400), `managedFields` in the body (400), the namespace must exist
//!   (404), a `resourceVersion` in the body is a precondition (409), CRD names (422), and the
//!   [`REJECT_ANNOTATION`] (422). 201 on create, 200 otherwise; `resourceVersion` comes from a
//!   global counter and moves only when the object changed; `generation` moves when anything
//!   outside `metadata`/`status` changed; the body's `status` is ignored.
//! - `GET` one object (also `.../{name}/status`), LIST per namespace and across namespaces with
//!   `labelSelector` (`k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (..)`, `k notin (..)`), `fieldSelector`
//!   on `metadata.name`/`metadata.namespace`, and `limit`/`continue`; items of built-in types
//!   carry no `apiVersion`/`kind`, like a real server. `DELETE` answers 200 with a `Success`
//!   Status and is immediate (no finalizers, no graceful deletion); `preconditions` (uid,
//!   resourceVersion) in the body are checked (409); deleting a Namespace deletes its objects,
//!   deleting a CRD its CRs.
//! - Simulated controllers ("auto-ready", on by default): applying a Deployment, StatefulSet,
//!   DaemonSet, Job, Pod, PVC, Namespace or Service fills the status a settled, healthy object
//!   would have; [`NOT_READY_ANNOTATION`] `"true"` leaves the status alone. CRDs are Established
//!   at once unless `set_auto_establish(false)`; `set_serve_before_established(true)` serves a
//!   CRD's kinds before it is Established. Nodes are synthetic (`set_nodes`).
//! - Errors are full `meta/v1` Status bodies with `code` and `reason`; `set_available(false)`
//!   answers 500 to everything (never 503/429, which kube retries).
//!
//! What it does not implement: watch, aggregated discovery (`run_aggregated`), OpenAPI, YAML
//! bodies, POST/PUT (create/replace), merge/strategic/JSON patches (415), the status subresource
//! for writes, deletecollection, defaulting and schema validation (objects are stored as sent),
//! version conversion (an object is visible only under the apiVersion it was applied with),
//! admission, RBAC, finalizers, owner references and garbage collection, real controllers
//! (ReplicaSets and Pods are never created), server-side `fieldValidation`, `Table` output
//! and metadata-only (`PartialObjectMetadata`) answers.

mod discovery;
mod errors;
mod fields;
mod http;
mod selector;
mod simulate;
mod store;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde_json::Value;

pub use store::{EDIT_MANAGER, NOT_READY_ANNOTATION, REJECT_ANNOTATION};
use store::{ObjectKey, State};

/// One request the stand-in received (every request is recorded, failed ones included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The raw (still URL-encoded) query, `""` when there is none.
    pub query: String,
    pub content_type: Option<String>,
    /// The HTTP status the stand-in answered with.
    pub status: u16,
}

impl RecordedRequest {
    /// A URL-decoded query parameter.
    pub fn param(&self, name: &str) -> Option<String> {
        let uri: axum::http::Uri = format!("/?{}", self.query).parse().ok()?;
        let axum::extract::Query(pairs) =
            axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&uri).ok()?;
        pairs.into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }
}

/// The running stand-in. Cheap to clone; all clones share one state. The server stops when the
/// last clone is dropped (or with the tokio runtime that started it).
#[derive(Clone)]
pub struct StandInApiServer {
    url: String,
    state: Arc<Mutex<State>>,
    _server: Arc<ServerTask>,
}

struct ServerTask(tokio::task::JoinHandle<()>);

impl Drop for ServerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl StandInApiServer {
    /// Starts a stand-in on `127.0.0.1:<free port>` in the current tokio runtime, with the
    /// namespaces `default` and `kube-system`, 3 ready nodes, auto-ready and auto-establish on.
    pub async fn start() -> StandInApiServer {
        let state = Arc::new(Mutex::new(State::new()));
        let app = axum::Router::new()
            .fallback(http::handle)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("stand-in: bind 127.0.0.1:0");
        let url = format!(
            "http://{}",
            listener.local_addr().expect("stand-in: local address")
        );
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("stand-in: serve");
        });
        StandInApiServer {
            url,
            state,
            _server: Arc::new(ServerTask(task)),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// A kube config for this server: plain HTTP, no auth, `default_retry = false` (kube would
    /// otherwise retry 429/503/504 for minutes), 30 s read timeout.
    pub fn kube_config(&self) -> kube::Config {
        let mut config =
            kube::Config::new(self.url.parse().expect("stand-in: URL parses as a URI"));
        config.default_retry = false;
        config.read_timeout = Some(std::time::Duration::from_secs(30));
        config
    }

    /// A kube client for this server. Installs the ring rustls provider (kube builds its TLS
    /// connector even for http URLs). Call inside the tokio runtime that will use the client.
    pub fn client(&self) -> kube::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        kube::Client::try_from(self.kube_config()).expect("stand-in: build kube client")
    }

    /// A kubeconfig (YAML) pointing at this server, context `stand-in`, namespace `default`.
    /// Note: kube reads `HTTPS_PROXY` for kubeconfig-based configs.
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: stand-in\n  cluster:\n    server: {}\n\
             users:\n- name: stand-in\n  user: {{}}\ncontexts:\n- name: stand-in\n  context:\n    cluster: stand-in\n    user: stand-in\n    namespace: default\n\
             current-context: stand-in\n",
            self.url
        )
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A test that panicked inside `edit` must not poison the stand-in for the rest.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `false`: every request gets a 500 InternalError Status (an unreachable/broken API).
    pub fn set_available(&self, available: bool) {
        self.state().available = available;
    }

    /// `false`: CRDs applied from now on stay `Established=False` (reason `Installing`) and out
    /// of discovery until [`establish`](Self::establish).
    pub fn set_auto_establish(&self, auto_establish: bool) {
        self.state().auto_establish = auto_establish;
    }

    /// `false`: applies no longer fill workload status (as if every object had the
    /// [`NOT_READY_ANNOTATION`]); existing status is kept.
    pub fn set_auto_ready(&self, auto_ready: bool) {
        self.state().auto_ready = auto_ready;
    }

    /// `true`: a CRD's kinds are served (in discovery and for requests) as soon as the CRD is
    /// stored, while its `Established` condition stays as it is (False until
    /// [`establish`](Self::establish) when auto-establish is off). Models the moment on a real
    /// cluster where the agent's discovery already sees a kind whose CRD is not Established yet
    /// (discovery and the condition come from different controllers, and with several API server
    /// replicas from different processes); the agent must wait for the condition itself.
    pub fn set_serve_before_established(&self, serve: bool) {
        self.state().serve_before_established = serve;
    }

    /// Marks the CRD `crd_name` (`<plural>.<group>`) Established. Panics if it is not stored.
    pub fn establish(&self, crd_name: &str) {
        self.state().establish(crd_name);
    }

    /// The synthetic nodes `node-1..=total`, the first `ready` of them Ready (default 3 of 3).
    pub fn set_nodes(&self, total: usize, ready: usize) {
        self.state().nodes = (total, ready.min(total));
    }

    /// The stored object, as a GET would return it (`apiVersion` and `kind` included).
    pub fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let key = ObjectKey::new(api_version, kind, namespace, name);
        self.state()
            .objects
            .get(&key)
            .map(|stored| stored.live.clone())
    }

    /// The config `manager` last applied to the object (server-owned metadata and status removed).
    pub fn applied_config(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        manager: &str,
    ) -> Option<Value> {
        let key = ObjectKey::new(api_version, kind, namespace, name);
        self.state()
            .objects
            .get(&key)
            .and_then(|stored| stored.applied.get(manager).cloned())
    }

    /// Every stored object as `(apiVersion, kind, namespace, name)`, sorted. Includes the
    /// pre-created namespaces `default` and `kube-system`; never the synthetic nodes.
    pub fn objects(&self) -> Vec<(String, String, Option<String>, String)> {
        let state = self.state();
        state
            .objects
            .keys()
            .map(|k| {
                (
                    k.api_version.clone(),
                    k.kind.clone(),
                    k.namespace.clone(),
                    k.name.clone(),
                )
            })
            .collect()
    }

    /// Replaces the object's `status` (a controller's status update; bumps `resourceVersion`).
    /// Panics if the object is not stored.
    pub fn set_status(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        status: Value,
    ) {
        self.state()
            .set_status(&ObjectKey::new(api_version, kind, namespace, name), status);
    }

    /// Another actor (kubectl edit, an HPA, a controller) changes the live object. Identity and
    /// server-owned metadata are restored afterwards; `resourceVersion` moves if anything changed,
    /// `generation` if anything outside `metadata`/`status` changed (and then the simulated
    /// controllers refresh the status, unless not-ready). The changed fields are recorded as
    /// owned by [`EDIT_MANAGER`] in `managedFields`; the stored applied configs do not change.
    /// Panics if the object is not stored.
    pub fn edit(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        change: impl FnOnce(&mut Value),
    ) {
        self.state()
            .edit(&ObjectKey::new(api_version, kind, namespace, name), change);
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.state().requests.clear();
    }
}
