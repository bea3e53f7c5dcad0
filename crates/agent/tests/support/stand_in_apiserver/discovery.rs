//! The resource types the stand-in serves (built-in ones plus established CRDs) and the
//! discovery documents kube-rs reads: `/version`, `/api`, `/api/v1`, `/apis`, `/apis/{g}`,
//! `/apis/{g}/{v}`. Shapes follow docs/dev/kube-rs-notes.md §3: `kind`/`apiVersion` of the
//! discovery documents are always the `meta/v1` constants, never the group's version.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// One served resource: what `/apis/{g}/{v}` lists and what the routes resolve against.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceType {
    /// `""` for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub verbs: Vec<String>,
    /// Whether `{plural}/status` is listed (and `GET .../{name}/status` served).
    pub status_subresource: bool,
    /// CRD-defined (its list items carry `apiVersion`/`kind`, unlike built-in lists).
    pub custom: bool,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments.apps`, or `configmaps` for the core group: the name used in error messages.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `Deployment.apps`: the prefix of 422 messages.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }
}

const READ_WRITE: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// A built-in type: `(group, version, kind, plural, namespaced, short names, status subresource)`.
type BuiltIn = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    &'static [&'static str],
    bool,
);

const BUILT_IN: &[BuiltIn] = &[
    ("", "v1", "Namespace", "namespaces", false, &["ns"], true),
    ("", "v1", "ConfigMap", "configmaps", true, &["cm"], false),
    ("", "v1", "Secret", "secrets", true, &[], false),
    ("", "v1", "Service", "services", true, &["svc"], true),
    (
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        true,
        &["sa"],
        false,
    ),
    ("", "v1", "Pod", "pods", true, &["po"], true),
    (
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        true,
        &["pvc"],
        true,
    ),
    ("", "v1", "Node", "nodes", false, &["no"], true),
    (
        "apps",
        "v1",
        "Deployment",
        "deployments",
        true,
        &["deploy"],
        true,
    ),
    (
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        true,
        &["sts"],
        true,
    ),
    ("apps", "v1", "DaemonSet", "daemonsets", true, &["ds"], true),
    ("batch", "v1", "Job", "jobs", true, &[], true),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        true,
        &[],
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        true,
        &[],
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        false,
        &[],
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
        &[],
        false,
    ),
    (
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
        &["crd", "crds"],
        true,
    ),
];

pub fn built_in_types() -> Vec<ResourceType> {
    BUILT_IN
        .iter()
        .map(
            |&(group, version, kind, plural, namespaced, short_names, status)| ResourceType {
                group: group.into(),
                version: version.into(),
                kind: kind.into(),
                plural: plural.into(),
                singular: kind.to_lowercase(),
                namespaced,
                short_names: short_names.iter().map(|s| s.to_string()).collect(),
                // Nodes are synthesized from `set_nodes`: read-only here.
                verbs: if kind == "Node" {
                    vec!["get".into(), "list".into(), "watch".into()]
                } else {
                    strings(READ_WRITE)
                },
                status_subresource: status,
                custom: false,
            },
        )
        .collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Whether a stored CRD has condition `Established=True`.
pub fn crd_established(crd: &Value) -> bool {
    crd["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True")
    })
}

/// The resource types an established CRD adds: one per served version.
pub fn crd_types(crd: &Value) -> Vec<ResourceType> {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let (Some(group), Some(kind), Some(plural)) = (
        spec["group"].as_str(),
        names["kind"].as_str(),
        names["plural"].as_str(),
    ) else {
        return Vec::new();
    };
    let short_names = names["shortNames"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(String::from);
    let short_names: Vec<String> = short_names.collect();
    spec["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["served"].as_bool() != Some(false))
        .filter_map(|v| v["name"].as_str().map(|name| (name, v)))
        .map(|(version, v)| ResourceType {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: names["singular"]
                .as_str()
                .map_or_else(|| kind.to_lowercase(), String::from),
            namespaced: spec["scope"] != "Cluster",
            short_names: short_names.clone(),
            verbs: strings(READ_WRITE),
            status_subresource: v["subresources"].get("status").is_some(),
            custom: true,
        })
        .collect()
}

/// `GET /version`.
pub fn version() -> Value {
    json!({
        "major": "1", "minor": "33", "gitVersion": "v1.33.1", "gitCommit": "stand-in",
        "gitTreeState": "clean", "buildDate": "2025-05-01T00:00:00Z", "goVersion": "go1.24.2",
        "compiler": "gc", "platform": "linux/amd64"
    })
}

/// `GET /api`.
pub fn core_versions() -> Value {
    json!({
        "kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}]
    })
}

/// `GET /api/v1` or `GET /apis/{g}/{v}`: the types of one group version (may be empty).
pub fn resource_list(group_version: &str, types: &[&ResourceType]) -> Value {
    let mut resources = Vec::new();
    for t in types {
        let mut entry = json!({
            "name": t.plural, "singularName": t.singular, "namespaced": t.namespaced,
            "kind": t.kind, "verbs": t.verbs,
        });
        if !t.short_names.is_empty() {
            entry["shortNames"] = json!(t.short_names);
        }
        resources.push(entry);
        if t.status_subresource {
            resources.push(json!({
                "name": format!("{}/status", t.plural), "singularName": "", "namespaced": t.namespaced,
                "kind": t.kind, "verbs": ["get", "patch", "update"],
            }));
        }
    }
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources})
}

/// One entry of `GET /apis`, also the body of `GET /apis/{g}`.
fn api_group(name: &str, versions: &[&str]) -> Value {
    let entries: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({"name": name, "versions": entries, "preferredVersion": entries[0]})
}

/// `GET /apis/{g}`.
pub fn group(name: &str, versions: &[&str]) -> Value {
    let mut body = api_group(name, versions);
    body["kind"] = json!("APIGroup");
    body["apiVersion"] = json!("v1");
    body
}

/// `GET /apis`: every non-core group, in first-seen order, with its versions.
pub fn group_list(types: &[ResourceType]) -> Value {
    let groups = groups(types);
    let entries: Vec<Value> = groups
        .iter()
        .map(|(name, versions)| api_group(name, versions))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": entries})
}

/// Non-core groups and their versions, in the order the types list them.
pub fn groups(types: &[ResourceType]) -> Vec<(String, Vec<&str>)> {
    let mut order: Vec<String> = Vec::new();
    let mut versions: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for t in types.iter().filter(|t| !t.group.is_empty()) {
        let entry = versions.entry(t.group.clone()).or_insert_with(|| {
            order.push(t.group.clone());
            Vec::new()
        });
        if !entry.contains(&t.version.as_str()) {
            entry.push(&t.version);
        }
    }
    order
        .into_iter()
        .map(|g| (g.clone(), versions.remove(&g).unwrap_or_default()))
        .collect()
}
