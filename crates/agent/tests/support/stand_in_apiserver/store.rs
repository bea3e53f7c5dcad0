//! The stand-in's state: stored objects with the config each field manager last applied, the
//! server-side apply approximation, delete, and the "other actor" operations tests use.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::RecordedRequest;
use super::discovery::{self, ResourceType};
use super::errors::{self, ApiError};
use super::fields::{self, Path};
use super::selector::{FieldSelector, LabelSelector};
use super::simulate::{self, TIME};

/// Field manager recorded for changes made through `StandInApiServer::edit` (the name
/// `kubectl edit` uses on real clusters).
pub const EDIT_MANAGER: &str = "kubectl-edit";
/// Annotation making an apply fail with 422 Invalid and the annotation's value as message.
pub const REJECT_ANNOTATION: &str = "stand-in.flotilla.dev/reject";
/// Annotation (`"true"`) keeping the simulated controllers away: the status is not filled.
pub const NOT_READY_ANNOTATION: &str = "stand-in.flotilla.dev/not-ready";

const CRD_API_VERSION: &str = "apiextensions.k8s.io/v1";
const CRD_KIND: &str = "CustomResourceDefinition";

/// Identity of a stored object. The derived order is the order of `objects()` and of lists.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectKey {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectKey {
    pub fn new(api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> ObjectKey {
        ObjectKey {
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: namespace.map(String::from),
            name: name.into(),
        }
    }
}

/// One object: what a GET returns, plus the ownership bookkeeping behind `managedFields`.
#[derive(Debug, Clone, Default)]
pub struct Stored {
    pub live: Value,
    /// The config each field manager applied last (server-owned metadata and `status` removed).
    pub applied: BTreeMap<String, Value>,
    /// Fields changed through `edit` since an apply last took them back (owned by [`EDIT_MANAGER`]).
    pub edited: BTreeSet<Path>,
}

/// Everything behind the stand-in's mutex.
#[derive(Debug)]
pub struct State {
    pub available: bool,
    pub auto_establish: bool,
    /// Serve a CRD's kinds (discovery and requests) before it is Established.
    pub serve_before_established: bool,
    pub auto_ready: bool,
    /// Synthetic nodes: (total, ready).
    pub nodes: (usize, usize),
    pub objects: BTreeMap<ObjectKey, Stored>,
    pub requests: Vec<RecordedRequest>,
    last_resource_version: u64,
    last_uid: u64,
}

/// One server-side apply request, after routing.
pub struct Apply<'a> {
    pub resource: &'a ResourceType,
    pub namespace: Option<&'a str>,
    pub name: &'a str,
    pub body: Value,
    pub manager: &'a str,
    pub force: bool,
    pub dry_run: bool,
}

impl State {
    /// A fresh cluster: namespaces `default` and `kube-system`, 3 ready nodes, all knobs on.
    pub fn new() -> State {
        let mut state = State {
            available: true,
            auto_establish: true,
            serve_before_established: false,
            auto_ready: true,
            nodes: (3, 3),
            objects: BTreeMap::new(),
            requests: Vec::new(),
            last_resource_version: 0,
            last_uid: 0,
        };
        for name in ["default", "kube-system"] {
            let uid = state.next_uid();
            let resource_version = state.next_resource_version();
            let live = json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name, "uid": uid, "resourceVersion": resource_version, "creationTimestamp": TIME,
                             "labels": {"kubernetes.io/metadata.name": name}},
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            });
            let stored = Stored {
                live,
                ..Stored::default()
            };
            state
                .objects
                .insert(ObjectKey::new("v1", "Namespace", None, name), stored);
        }
        state
    }

    fn next_resource_version(&mut self) -> String {
        self.last_resource_version += 1;
        self.last_resource_version.to_string()
    }

    fn next_uid(&mut self) -> String {
        self.last_uid += 1;
        format!("00000000-0000-4000-8000-{:012x}", self.last_uid)
    }

    /// The resourceVersion a list reports.
    pub fn current_resource_version(&self) -> String {
        self.last_resource_version.to_string()
    }

    /// Built-in types plus the served versions of every established CRD (of every CRD with
    /// `serve_before_established`).
    pub fn resource_types(&self) -> Vec<ResourceType> {
        let mut types = discovery::built_in_types();
        for (key, stored) in &self.objects {
            if key.api_version == CRD_API_VERSION
                && key.kind == CRD_KIND
                && (self.serve_before_established || discovery::crd_established(&stored.live))
            {
                types.extend(discovery::crd_types(&stored.live));
            }
        }
        types
    }

    /// GET of one object (nodes are synthesized).
    pub fn get(
        &self,
        t: &ResourceType,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        if is_node(t) {
            let nodes = simulate::nodes(self.nodes.0, self.nodes.1);
            return nodes
                .into_iter()
                .find(|n| n["metadata"]["name"] == name)
                .ok_or_else(|| ApiError::object_not_found(t, name));
        }
        let key = ObjectKey::new(&t.api_version(), &t.kind, namespace, name);
        self.objects
            .get(&key)
            .map(|s| s.live.clone())
            .ok_or_else(|| ApiError::object_not_found(t, name))
    }

    /// The items of a LIST (in one namespace, or all of them when `namespace` is `None`).
    /// Like a real server, items of built-in types carry no `apiVersion`/`kind`; CRs do.
    pub fn list(
        &self,
        t: &ResourceType,
        namespace: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> Vec<Value> {
        let candidates: Vec<Value> = if is_node(t) {
            simulate::nodes(self.nodes.0, self.nodes.1)
        } else {
            let api_version = t.api_version();
            let in_scope = |k: &ObjectKey| {
                k.api_version == api_version
                    && k.kind == t.kind
                    && (namespace.is_none() || k.namespace.as_deref() == namespace)
            };
            self.objects
                .iter()
                .filter(|(k, _)| in_scope(k))
                .map(|(_, s)| s.live.clone())
                .collect()
        };
        candidates
            .into_iter()
            .filter(|o| labels.matches(o["metadata"]["labels"].as_object()) && fields.matches(o))
            .map(|mut o| {
                if !t.custom {
                    let map = o.as_object_mut().expect("objects are maps");
                    map.remove("apiVersion");
                    map.remove("kind");
                }
                o
            })
            .collect()
    }

    /// Server-side apply. Returns the resulting object and whether it was created.
    pub fn apply(&mut self, request: Apply<'_>) -> Result<(Value, bool), ApiError> {
        let t = request.resource;
        let (name, manager) = (request.name, request.manager);
        let (config, precondition) = self.validate_apply(&request)?;
        let key = ObjectKey::new(&t.api_version(), &t.kind, request.namespace, name);
        let previous = self.objects.get(&key);

        if let Some(wanted) = precondition {
            let live = previous.map(|p| p.live["metadata"]["resourceVersion"].clone());
            if live.as_ref().and_then(Value::as_str) != Some(wanted.as_str()) {
                return Err(ApiError::conflict(
                    format!(
                        "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                        t.qualified_plural()
                    ),
                    vec![],
                ));
            }
        }
        let new_paths = fields::owned_paths(&config);
        if let (Some(previous), false) = (previous, request.force) {
            check_conflicts(previous, manager, &config, &new_paths, &t.api_version())?;
        }

        // Start from the live object, drop what this manager applied last time but no longer
        // applies (unless someone else owns it too), then merge the new config in.
        let mut stored = previous.cloned().unwrap_or_default();
        let mut object = if previous.is_some() {
            stored.live.clone()
        } else {
            json!({})
        };
        if let Some(last) = stored.applied.get(manager) {
            for path in fields::owned_paths(last).difference(&new_paths) {
                if !owned_by_others(&stored, manager, path) {
                    fields::remove(&mut object, path);
                    prune_empty_parents(&mut object, path, &config, &stored, manager);
                }
            }
        }
        fields::merge(&mut object, &config);

        let created = previous.is_none();
        if created {
            object["metadata"]["uid"] = json!(self.next_uid());
            object["metadata"]["creationTimestamp"] = json!(TIME);
            object["metadata"]["generation"] = json!(1);
        } else if spec_view(&object) != spec_view(&stored.live) {
            let generation = stored.live["metadata"]["generation"].as_i64().unwrap_or(0);
            object["metadata"]["generation"] = json!(generation + 1);
        }

        stored.applied.insert(manager.to_string(), config);
        stored
            .edited
            .retain(|edited| !new_paths.iter().any(|p| fields::overlaps(p, edited)));
        let before = std::mem::replace(&mut stored.live, object);
        self.run_controllers(&mut stored.live);
        render_managed_fields(&mut stored, &t.api_version());

        let unchanged =
            !created && without_resource_version(&stored.live) == without_resource_version(&before);
        if !request.dry_run && !unchanged {
            stored.live["metadata"]["resourceVersion"] = json!(self.next_resource_version());
        }
        let object = stored.live.clone();
        if !request.dry_run {
            self.objects.insert(key, stored);
        }
        Ok((object, created))
    }

    /// The checks a real server makes before applying; returns the cleaned config and the
    /// `metadata.resourceVersion` precondition, if the body carried one.
    fn validate_apply(&self, request: &Apply<'_>) -> Result<(Value, Option<String>), ApiError> {
        let t = request.resource;
        let name = request.name;
        let mut config = request.body.clone();
        let Some(body) = config.as_object_mut() else {
            return Err(ApiError::bad_request(
                "the body of an apply patch must be an object",
            ));
        };
        for (field, expected, what) in [
            ("apiVersion", t.api_version(), "API version"),
            ("kind", t.kind.clone(), "kind"),
        ] {
            match body.get(field).and_then(Value::as_str) {
                None => {
                    return Err(ApiError::bad_request(format!(
                        "{field} must be set in an apply patch"
                    )));
                }
                Some(got) if got != expected => {
                    return Err(ApiError::bad_request(format!(
                        "the {what} in the data ({got}) does not match the expected {what} ({expected})"
                    )));
                }
                Some(_) => {}
            }
        }
        body.remove("status");
        let metadata = body.entry("metadata").or_insert_with(|| json!({}));
        let Some(metadata) = metadata.as_object_mut() else {
            return Err(ApiError::bad_request("metadata must be an object"));
        };
        match metadata.get("name").and_then(Value::as_str) {
            Some(body_name) if body_name != name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({body_name}) does not match the name on the URL ({name})"
                )));
            }
            _ => {}
        }
        metadata.insert("name".into(), json!(name));
        match request.namespace {
            Some(namespace) => {
                if metadata
                    .get("namespace")
                    .and_then(Value::as_str)
                    .is_some_and(|ns| !ns.is_empty() && ns != namespace)
                {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                metadata.insert("namespace".into(), json!(namespace));
            }
            None => {
                // A real server silently clears the namespace of cluster-scoped objects.
                metadata.remove("namespace");
            }
        }
        if metadata.get("managedFields").is_some_and(|m| !m.is_null()) {
            return Err(ApiError::bad_request("metadata.managedFields must be nil"));
        }
        let precondition = metadata
            .remove("resourceVersion")
            .and_then(|v| v.as_str().map(String::from));
        for server_owned in [
            "uid",
            "generation",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            metadata.remove(server_owned);
        }
        fields::strip_nulls(&mut config);

        if let Some(namespace) = request.namespace
            && !self
                .objects
                .contains_key(&ObjectKey::new("v1", "Namespace", None, namespace))
        {
            return Err(ApiError::namespace_not_found(namespace));
        }
        if let Some(message) = config["metadata"]["annotations"][REJECT_ANNOTATION].as_str() {
            return Err(ApiError::invalid(t, name, "", message));
        }
        if t.api_version() == CRD_API_VERSION && t.kind == CRD_KIND {
            let spec = &config["spec"];
            let expected = format!(
                "{}.{}",
                spec["names"]["plural"].as_str().unwrap_or(""),
                spec["group"].as_str().unwrap_or("")
            );
            if name != expected {
                return Err(ApiError::invalid(
                    t,
                    name,
                    "metadata.name",
                    "must be spec.names.plural+\".\"+spec.group",
                ));
            }
        }
        Ok((config, precondition))
    }

    /// What the controllers would do right after a write: CRD conditions, workload status.
    fn run_controllers(&self, object: &mut Value) {
        let api_version = object["apiVersion"].as_str().unwrap_or("").to_string();
        let kind = object["kind"].as_str().unwrap_or("").to_string();
        if api_version == CRD_API_VERSION && kind == CRD_KIND {
            let established = discovery::crd_established(object) || self.auto_establish;
            object["status"] = simulate::crd_status(object, established);
            return;
        }
        if !self.auto_ready || object["metadata"]["annotations"][NOT_READY_ANNOTATION] == "true" {
            return;
        }
        if let Some(status) = simulate::ready_status(&api_version, &kind, object) {
            object["status"] = status;
        }
    }

    /// DELETE: removes the object (a Namespace takes its objects along, a CRD its CRs).
    /// `preconditions` (`{"uid": .., "resourceVersion": ..}`, either optional) must match the
    /// stored object, otherwise 409 Conflict, as on a real server.
    pub fn delete(
        &mut self,
        t: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        dry_run: bool,
        preconditions: &Value,
    ) -> Result<Value, ApiError> {
        let key = ObjectKey::new(&t.api_version(), &t.kind, namespace, name);
        let Some(stored) = self.objects.get(&key) else {
            return Err(ApiError::object_not_found(t, name));
        };
        for (field, label) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
            if let Some(wanted) = preconditions[field].as_str()
                && stored.live["metadata"][field].as_str() != Some(wanted)
            {
                return Err(ApiError::conflict(
                    format!(
                        "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: {label} in precondition: {wanted}, {label} in object meta: {}",
                        t.qualified_plural(),
                        stored.live["metadata"][field].as_str().unwrap_or("")
                    ),
                    Vec::new(),
                ));
            }
        }
        let answer = errors::delete_success(t, name, &stored.live["metadata"]["uid"]);
        if dry_run {
            return Ok(answer);
        }
        let removed = self.objects.remove(&key).expect("checked above");
        if t.api_version() == "v1" && t.kind == "Namespace" {
            self.objects
                .retain(|k, _| k.namespace.as_deref() != Some(name));
        }
        if t.api_version() == CRD_API_VERSION && t.kind == CRD_KIND {
            let spec = &removed.live["spec"];
            let group = spec["group"].as_str().unwrap_or("");
            let kind = spec["names"]["kind"].as_str().unwrap_or("");
            self.objects.retain(|k, _| {
                !(k.kind == kind && k.api_version.split_once('/').map(|(g, _)| g) == Some(group))
            });
        }
        self.next_resource_version();
        Ok(answer)
    }

    /// Another actor changes the live object (`kubectl edit`, an HPA, a controller): identity and
    /// server-owned metadata cannot change, changed fields move to [`EDIT_MANAGER`], the stored
    /// applied configs stay as they are. A spec change bumps `generation` and, like any spec
    /// change, lets the simulated controllers refresh the status.
    pub fn edit(&mut self, key: &ObjectKey, change: impl FnOnce(&mut Value)) {
        let Some(stored) = self.objects.get(key) else {
            panic!("stand-in: edit of a missing object {key:?}");
        };
        // Change a copy first: a panicking closure leaves the stored object as it was.
        let mut changed = stored.live.clone();
        change(&mut changed);
        let mut stored = self.objects.remove(key).expect("checked above");
        let before = std::mem::replace(&mut stored.live, changed);
        for field in ["apiVersion", "kind"] {
            stored.live[field] = before[field].clone();
        }
        if !stored.live["metadata"].is_object() {
            stored.live["metadata"] = json!({});
        }
        for field in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "resourceVersion",
            "generation",
            "managedFields",
        ] {
            let metadata = stored.live["metadata"]
                .as_object_mut()
                .expect("made a map above");
            match before["metadata"].get(field) {
                Some(value) => metadata.insert(field.into(), value.clone()),
                None => metadata.remove(field),
            };
        }
        stored.edited.extend(fields::diff(
            &ownable_view(&before),
            &ownable_view(&stored.live),
        ));
        if spec_view(&stored.live) != spec_view(&before) {
            let generation = before["metadata"]["generation"].as_i64().unwrap_or(0);
            stored.live["metadata"]["generation"] = json!(generation + 1);
            self.run_controllers(&mut stored.live);
        }
        self.finish_write(key, stored, &before);
    }

    /// Replaces `status` (what a controller's status update does).
    pub fn set_status(&mut self, key: &ObjectKey, status: Value) {
        let mut stored = self
            .objects
            .remove(key)
            .unwrap_or_else(|| panic!("stand-in: set_status of a missing object {key:?}"));
        let before = stored.live.clone();
        stored.live["status"] = status;
        self.finish_write(key, stored, &before);
    }

    /// Marks a stored CRD Established (its kinds then appear in discovery).
    pub fn establish(&mut self, crd_name: &str) {
        let key = ObjectKey::new(CRD_API_VERSION, CRD_KIND, None, crd_name);
        let mut stored = self
            .objects
            .remove(&key)
            .unwrap_or_else(|| panic!("stand-in: establish of a missing CRD {crd_name:?}"));
        let before = stored.live.clone();
        stored.live["status"] = simulate::crd_status(&stored.live, true);
        self.finish_write(&key, stored, &before);
    }

    fn finish_write(&mut self, key: &ObjectKey, mut stored: Stored, before: &Value) {
        render_managed_fields(&mut stored, &key.api_version);
        if stored.live != *before {
            stored.live["metadata"]["resourceVersion"] = json!(self.next_resource_version());
        }
        self.objects.insert(key.clone(), stored);
    }
}

fn is_node(t: &ResourceType) -> bool {
    t.group.is_empty() && t.kind == "Node"
}

/// Whether a field is also owned by another applier or by [`EDIT_MANAGER`].
fn owned_by_others(stored: &Stored, manager: &str, path: &[fields::Seg]) -> bool {
    let by_appliers = stored
        .applied
        .iter()
        .filter(|(m, _)| m.as_str() != manager)
        .any(|(_, config)| {
            fields::owned_paths(config)
                .iter()
                .any(|p| fields::overlaps(p, path))
        });
    by_appliers || stored.edited.iter().any(|p| fields::overlaps(p, path))
}

/// After removing `path`, removes the maps/lists above it that became empty, unless the new
/// config or another manager still has them.
fn prune_empty_parents(
    object: &mut Value,
    path: &[fields::Seg],
    config: &Value,
    stored: &Stored,
    manager: &str,
) {
    for len in (1..path.len()).rev() {
        let parent = &path[..len];
        if parent.len() == 1 && parent[0] == fields::Seg::Field("metadata".into()) {
            return;
        }
        if !fields::is_empty_container(object, parent)
            || fields::get(config, parent).is_some()
            || owned_by_others(stored, manager, parent)
        {
            return;
        }
        fields::remove(object, parent);
    }
}

/// Without force, applying a different value to a field another manager owns is a conflict.
fn check_conflicts(
    stored: &Stored,
    manager: &str,
    config: &Value,
    new_paths: &BTreeSet<Path>,
    api_version: &str,
) -> Result<(), ApiError> {
    let mut owners: Vec<(String, BTreeSet<Path>)> = stored
        .applied
        .iter()
        .filter(|(m, _)| m.as_str() != manager)
        .map(|(m, c)| (m.clone(), fields::owned_paths(c)))
        .collect();
    owners.push((EDIT_MANAGER.to_string(), stored.edited.clone()));
    let mut causes = Vec::new();
    let mut messages = Vec::new();
    for (owner, owned) in &owners {
        for path in new_paths {
            let contested = owned.iter().any(|o| fields::overlaps(o, path));
            if contested && fields::get(&stored.live, path) != fields::get(config, path) {
                let message = format!("conflict with \"{owner}\" using {api_version}");
                causes.push(json!({"reason": "FieldManagerConflict", "message": message, "field": fields::display(path)}));
                messages.push(format!("{message}: {}", fields::display(path)));
            }
        }
    }
    if causes.is_empty() {
        return Ok(());
    }
    let count = causes.len();
    let plural = if count == 1 { "" } else { "s" };
    Err(ApiError::conflict(
        format!(
            "Apply failed with {count} conflict{plural}: {}",
            messages.join("; ")
        ),
        causes,
    ))
}

/// `metadata.managedFields`: one Apply entry per field manager (minus fields taken by edits) and
/// one Update entry for [`EDIT_MANAGER`].
fn render_managed_fields(stored: &mut Stored, api_version: &str) {
    let mut entries = Vec::new();
    let entry = |manager: &str, operation: &str, paths: &BTreeSet<Path>| {
        json!({"manager": manager, "operation": operation, "apiVersion": api_version, "time": TIME,
               "fieldsType": "FieldsV1", "fieldsV1": fields::fields_v1(paths)})
    };
    for (manager, config) in &stored.applied {
        let mut paths = fields::owned_paths(config);
        paths.retain(|p| !stored.edited.iter().any(|e| p.starts_with(e)));
        if !paths.is_empty() {
            entries.push(entry(manager, "Apply", &paths));
        }
    }
    let edited: BTreeSet<Path> = stored
        .edited
        .iter()
        .filter(|p| fields::get(&stored.live, p).is_some())
        .cloned()
        .collect();
    if !edited.is_empty() {
        entries.push(entry(EDIT_MANAGER, "Update", &edited));
    }
    if let Some(metadata) = stored.live["metadata"].as_object_mut() {
        if entries.is_empty() {
            metadata.remove("managedFields");
        } else {
            metadata.insert("managedFields".into(), Value::Array(entries));
        }
    }
}

/// The object without `metadata` and `status`: a change here bumps `generation`.
fn spec_view(object: &Value) -> Value {
    let mut view = object.clone();
    if let Some(map) = view.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    view
}

/// The fields a manager can own: everything but identity, server-owned metadata and status.
fn ownable_view(object: &Value) -> Value {
    let mut view = spec_view(object);
    let mut metadata = Map::new();
    for field in ["labels", "annotations", "finalizers", "ownerReferences"] {
        if let Some(value) = object["metadata"].get(field) {
            metadata.insert(field.into(), value.clone());
        }
    }
    if let Some(map) = view.as_object_mut() {
        map.remove("apiVersion");
        map.remove("kind");
        map.insert("metadata".into(), Value::Object(metadata));
    }
    view
}

fn without_resource_version(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(metadata) = copy["metadata"].as_object_mut() {
        metadata.remove("resourceVersion");
    }
    copy
}
