//! What the Kubernetes driver remembers each bundle applied (the inventory kept in the state
//! dir), the references to objects in it, and who owns a live object.

use std::collections::BTreeMap;

use flotilla_api::{DriftPolicy, agent::BundleReport};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::BUNDLE_LABEL;

/// One object a bundle applied.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    pub fn of(manifest: &Value) -> ObjectRef {
        let text = |pointer: &str| {
            manifest
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        ObjectRef {
            api_version: text("/apiVersion"),
            kind: text("/kind"),
            namespace: manifest
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .filter(|namespace| !namespace.is_empty())
                .map(str::to_string),
            name: text("/metadata/name"),
        }
    }

    pub fn describe(&self) -> String {
        match &self.namespace {
            Some(namespace) => format!("{} {namespace}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }
}

/// What one bundle applied, and how it is doing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppliedBundle {
    pub deployment: String,
    #[serde(default)]
    pub keep_resources: bool,
    #[serde(default)]
    pub drift: DriftPolicy,
    /// The manifests as applied (namespaces resolved), the reference for drift.
    pub manifests: Vec<Value>,
    /// Manifests not applied yet: custom resources waiting for their CRD.
    #[serde(default)]
    pub waiting: Vec<Value>,
    /// Manifests whose apply failed: applied again on every refresh until they succeed.
    #[serde(default)]
    pub failed: Vec<Value>,
    /// Objects a prune or removal could not delete yet.
    #[serde(default)]
    pub pending_deletes: Vec<ObjectRef>,
    /// Manifests naming objects labelled as another bundle's. They are not in `manifests`: this
    /// bundle does not own them, so it never prunes, deletes or corrects them; they keep the
    /// bundle in Error and are checked again on every refresh (applied once the other bundle
    /// lets go of the object).
    #[serde(default)]
    pub contested: Vec<Value>,
    pub report: BundleReport,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Inventory {
    pub bundles: BTreeMap<String, AppliedBundle>,
}

/// Whether `manifests` names `target`.
pub fn contains(manifests: &[Value], target: &ObjectRef) -> bool {
    manifests
        .iter()
        .any(|m| same_object(&ObjectRef::of(m), target))
}

/// The bundle an object is labelled as belonging to.
pub fn owner(object: &Value) -> Option<&str> {
    object
        .pointer(&format!(
            "/metadata/labels/{}",
            BUNDLE_LABEL.replace('/', "~1")
        ))
        .and_then(Value::as_str)
}

/// The same object, whatever version of its group's API names it; a missing namespace
/// matches any.
pub fn same_object(a: &ObjectRef, b: &ObjectRef) -> bool {
    a.kind == b.kind
        && a.name == b.name
        && a.api_version.split_once('/').map(|(g, _)| g).unwrap_or("")
            == b.api_version.split_once('/').map(|(g, _)| g).unwrap_or("")
        && (a.namespace == b.namespace || a.namespace.is_none() || b.namespace.is_none())
}
