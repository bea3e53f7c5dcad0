//! Manifest customization: validating Kubernetes manifests, JSON merge patches (RFC 7386),
//! `${...}` placeholder substitution, and applying a bundle target's [`DeployOptions`].
//!
//! Placeholders are exactly `${cluster.name}`, `${cluster.labels.KEY}` and `${values.KEY}`, where
//! KEY is one or more ASCII letters, digits, `/`, `.`, `-` or `_`. They are replaced inside string
//! values at any depth, never in object keys. Any other `${...}` text (a shell `${HOME}`) is left
//! alone. `$${` directly before a placeholder writes a literal `${` (`$${values.x}` becomes the text
//! `${values.x}`); before anything else `$${` is ordinary text and stays as it is.
//!
//! Recursion follows the depth of the JSON value, which its parser bounds.

use std::collections::{BTreeMap, BTreeSet};

use flotilla_api::agent::DeployOptions;
use flotilla_api::resource::Patch;
use serde_json::{Map, Value};

/// A manifest is not a Kubernetes object flotilla can track.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error(
        "{object} is {found}, not a JSON object; every manifest must be a Kubernetes object with \
         apiVersion, kind and metadata.name"
    )]
    NotAnObject { object: String, found: &'static str },
    #[error("{object}: {field} {problem}")]
    InvalidField {
        object: String,
        field: String,
        problem: String,
    },
    #[error(
        "{object} uses metadata.generateName without metadata.name; names are required so flotilla \
         can track the object: set metadata.name instead"
    )]
    GenerateName { object: String },
    #[error(
        "{first} and {second} are the same object (API group {group:?}, namespace {}); remove one \
         of them or give it another name",
        namespace_text(.namespace)
    )]
    Duplicate {
        first: String,
        second: String,
        group: String,
        namespace: Option<String>,
    },
}

/// Customizing a bundle's manifests failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CustomizeError {
    #[error(
        "placeholder ${{{placeholder}}}{} has no value: {}",
        object_text(.object),
        missing_value_hint(.placeholder)
    )]
    MissingValue {
        placeholder: String,
        object: Option<String>,
    },
    #[error("invalid bundle manifest: {0}")]
    InvalidManifest(ManifestError),
    #[error("customization made the manifests invalid (check the bundle target's patches): {0}")]
    InvalidAfterCustomization(ManifestError),
}

fn namespace_text(namespace: &Option<String>) -> String {
    match namespace {
        Some(namespace) => format!("{namespace:?}"),
        None => "none".to_string(),
    }
}

fn object_text(object: &Option<String>) -> String {
    object
        .as_ref()
        .map(|object| format!(" in {object}"))
        .unwrap_or_default()
}

fn missing_value_hint(placeholder: &str) -> String {
    if let Some(key) = placeholder.strip_prefix("cluster.labels.") {
        format!("the cluster has no label {key:?}; label the cluster or stop using the placeholder")
    } else if let Some(key) = placeholder.strip_prefix("values.") {
        format!(
            "the bundle target sets no value {key:?}; set customization.values.{key} on the bundle \
             target or stop using the placeholder"
        )
    } else {
        "the server did not send the cluster's name, which it always should; upgrade the server \
         or report this as a bug"
            .to_string()
    }
}

/// Checks that `manifest` is a Kubernetes object flotilla can track: a JSON object with non-empty
/// string `apiVersion`, `kind` and `metadata.name`, a string `metadata.namespace` if any, and string
/// `metadata.labels` values if any. A `null` namespace or labels counts as absent.
pub fn validate_manifest(manifest: &Value) -> Result<(), ManifestError> {
    validate_at(manifest, None)
}

/// Checks every manifest with [`validate_manifest`] and that no two of them are the same object:
/// same API group (the version does not matter), kind, namespace and name.
pub fn validate_manifests(manifests: &[Value]) -> Result<(), ManifestError> {
    type Key = (String, String, Option<String>, String);
    let mut seen: BTreeMap<Key, (usize, &Value)> = BTreeMap::new();
    let at = |index, manifest| format!("{} (index {index})", describe(manifest, None));
    for (index, manifest) in manifests.iter().enumerate() {
        validate_at(manifest, Some(index))?;
        let field = |path: &[&str]| str_at(manifest, path).unwrap_or_default();
        let group = api_group(field(&["apiVersion"])).to_string();
        let (kind, name) = (field(&["kind"]), field(&["metadata", "name"]));
        let key = (
            group,
            kind.into(),
            namespace_of(manifest).map(Into::into),
            name.into(),
        );
        if let Some(&(first_index, first)) = seen.get(&key) {
            let (first, second) = (at(first_index, first), at(index, manifest));
            let (group, _, namespace, _) = key;
            return Err(ManifestError::Duplicate {
                first,
                second,
                group,
                namespace,
            });
        }
        seen.insert(key, (index, manifest));
    }
    Ok(())
}

fn validate_at(manifest: &Value, index: Option<usize>) -> Result<(), ManifestError> {
    let object = || describe(manifest, index);
    let Value::Object(map) = manifest else {
        let found = type_name(manifest);
        return Err(ManifestError::NotAnObject {
            object: object(),
            found,
        });
    };
    let invalid = |field: &str, problem: String| {
        let field = field.to_string();
        Err(ManifestError::InvalidField {
            object: object(),
            field,
            problem,
        })
    };
    let wrong_type = |field: &str, expected: &str, value: &Value| {
        let found = type_name(value);
        invalid(
            field,
            format!("must be {expected} but is {found}; fix it or remove it"),
        )
    };
    let required = |value: Option<&Value>, field: &str| {
        let problem = match value {
            Some(Value::String(text)) if !text.is_empty() => return Ok(()),
            Some(Value::String(_)) => "is empty",
            None | Some(Value::Null) => "is missing",
            Some(other) => return wrong_type(field, "a non-empty string", other),
        };
        invalid(
            field,
            format!("{problem}; every object needs a non-empty string {field}"),
        )
    };
    required(map.get("apiVersion"), "apiVersion")?;
    required(map.get("kind"), "kind")?;
    let empty = Map::new();
    let metadata = match map.get("metadata") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(metadata)) => metadata,
        Some(other) => return wrong_type("metadata", "an object", other),
    };
    let name = metadata.get("name");
    if matches!(name, None | Some(Value::Null)) && metadata.contains_key("generateName") {
        return Err(ManifestError::GenerateName { object: object() });
    }
    required(name, "metadata.name")?;
    match metadata.get("namespace") {
        None | Some(Value::Null | Value::String(_)) => {}
        Some(other) => return wrong_type("metadata.namespace", "a string", other),
    }
    match metadata.get("labels") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Object(labels)) => match labels.iter().find(|(_, value)| !value.is_string()) {
            Some((key, value)) => wrong_type(&format!("metadata.labels.{key}"), "a string", value),
            None => Ok(()),
        },
        Some(other) => wrong_type("metadata.labels", "an object", other),
    }
}

/// Names an object for error messages: `kind/name` when both are known, else its index.
fn describe(manifest: &Value, index: Option<usize>) -> String {
    let kind = str_at(manifest, &["kind"]).filter(|kind| !kind.is_empty());
    let name = str_at(manifest, &["metadata", "name"]).filter(|name| !name.is_empty());
    match (kind, name, index) {
        (Some(kind), Some(name), _) => format!("{kind}/{name}"),
        (Some(kind), None, Some(index)) => format!("{kind} at index {index}"),
        (None, _, Some(index)) => format!("the object at index {index}"),
        (Some(kind), None, None) => format!("a {kind} object"),
        (None, _, None) => "the manifest".to_string(),
    }
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(value, |value, key| value.get(key))?
        .as_str()
}

/// `metadata.namespace`, with an empty namespace counting as none.
fn namespace_of(manifest: &Value) -> Option<&str> {
    str_at(manifest, &["metadata", "namespace"]).filter(|namespace| !namespace.is_empty())
}

/// The API group of an `apiVersion`: `apps` for `apps/v1`, `""` (core) for `v1`.
fn api_group(api_version: &str) -> &str {
    api_version.split_once('/').map_or("", |(group, _)| group)
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A piece of a string value, as far as placeholders are concerned.
enum Segment<'a> {
    Text(&'a str),
    /// A placeholder's variable name (the text inside `${}`).
    Var(&'a str),
}

/// Splits `text` into literal text and placeholders; an escaped placeholder becomes text.
fn segments(text: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    let mut text_start = 0;
    let mut at = 0;
    while let Some(offset) = text.get(at..).and_then(|rest| rest.find('$')) {
        at += offset;
        let rest = text.get(at..).unwrap_or_default();
        if let Some(len) = rest.strip_prefix('$').and_then(placeholder_len) {
            // `$${name}`: keep `${name}` as text.
            out.push(Segment::Text(text.get(text_start..at).unwrap_or_default()));
            text_start = at + 1;
            at += 1 + len;
        } else if let Some(len) = placeholder_len(rest) {
            out.push(Segment::Text(text.get(text_start..at).unwrap_or_default()));
            out.push(Segment::Var(rest.get(2..len - 1).unwrap_or_default()));
            at += len;
            text_start = at;
        } else {
            at += 1;
        }
    }
    out.push(Segment::Text(text.get(text_start..).unwrap_or_default()));
    out
}

/// The length of the placeholder `text` starts with, if it starts with one.
fn placeholder_len(text: &str) -> Option<usize> {
    let inner = text.strip_prefix("${")?;
    let name = &inner[..inner.find('}')?];
    is_var_name(name).then_some(name.len() + 3)
}

fn is_var_name(name: &str) -> bool {
    let is_key = |key: &str| {
        !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '-' | '_'))
    };
    name == "cluster.name"
        || name.strip_prefix("cluster.labels.").is_some_and(is_key)
        || name.strip_prefix("values.").is_some_and(is_key)
}

fn for_each_string(value: &Value, found: &mut impl FnMut(&str)) {
    match value {
        Value::String(text) => found(text),
        Value::Array(items) => items.iter().for_each(|item| for_each_string(item, found)),
        Value::Object(map) => map.values().for_each(|item| for_each_string(item, found)),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// The variable names of the placeholders used in `manifests` and the patch bodies, e.g.
/// `cluster.name`, `cluster.labels.region`, `values.replicas`. Escaped placeholders are not used.
pub fn referenced_vars(manifests: &[Value], patches: &[Patch]) -> BTreeSet<String> {
    let mut vars = BTreeSet::new();
    let mut found = |text: &str| {
        if text.contains("${") {
            for segment in segments(text) {
                if let Segment::Var(name) = segment {
                    vars.insert(name.to_string());
                }
            }
        }
    };
    let values = manifests
        .iter()
        .chain(patches.iter().map(|patch| &patch.patch));
    values.for_each(|value| for_each_string(value, &mut found));
    vars
}

/// Replaces every placeholder in the string values of `value` (at any depth) with its entry in
/// `vars`, and every escaped placeholder with its literal text. A placeholder without an entry
/// is an error; `value` may then be partly substituted.
pub fn substitute(
    value: &mut Value,
    vars: &BTreeMap<String, String>,
) -> Result<(), CustomizeError> {
    match value {
        Value::String(text) if text.contains("${") => {
            let mut out = String::with_capacity(text.len());
            for segment in segments(text) {
                match segment {
                    Segment::Text(literal) => out.push_str(literal),
                    Segment::Var(name) => match vars.get(name) {
                        Some(replacement) => out.push_str(replacement),
                        None => {
                            let placeholder = name.to_string();
                            return Err(CustomizeError::MissingValue {
                                placeholder,
                                object: None,
                            });
                        }
                    },
                }
            }
            *text = out;
        }
        Value::Array(items) => items
            .iter_mut()
            .try_for_each(|item| substitute(item, vars))?,
        Value::Object(map) => map
            .values_mut()
            .try_for_each(|item| substitute(item, vars))?,
        Value::String(_) | Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    Ok(())
}

/// Applies an RFC 7386 JSON merge patch: an object patch merges into the target key by key
/// (`null` deletes the key, objects merge recursively, anything else replaces the value); any
/// other patch replaces the whole target. The `json-patch` crate's implementation (pure).
pub use json_patch::merge as merge_patch;

/// Whether `kind` in `api_version` is a well-known cluster-scoped built-in kind. Everything else,
/// custom resources included, counts as namespaced; use API discovery where it is available.
pub fn is_cluster_scoped(api_version: &str, kind: &str) -> bool {
    let kinds: &[&str] = match api_group(api_version) {
        "" => &["Namespace", "Node", "PersistentVolume", "ComponentStatus"],
        "rbac.authorization.k8s.io" => &["ClusterRole", "ClusterRoleBinding"],
        "apiextensions.k8s.io" => &["CustomResourceDefinition"],
        "storage.k8s.io" => &[
            "StorageClass",
            "CSIDriver",
            "CSINode",
            "VolumeAttachment",
            "VolumeAttributesClass",
        ],
        "scheduling.k8s.io" => &["PriorityClass"],
        "networking.k8s.io" => &["IngressClass", "IPAddress", "ServiceCIDR"],
        "node.k8s.io" => &["RuntimeClass"],
        "apiregistration.k8s.io" => &["APIService"],
        "admissionregistration.k8s.io" => &[
            "MutatingWebhookConfiguration",
            "ValidatingWebhookConfiguration",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
            "MutatingAdmissionPolicy",
            "MutatingAdmissionPolicyBinding",
        ],
        "certificates.k8s.io" => &["CertificateSigningRequest"],
        "flowcontrol.apiserver.k8s.io" => &["FlowSchema", "PriorityLevelConfiguration"],
        _ => &[],
    };
    kinds.contains(&kind)
}

/// Returns customized copies of `manifests`. For each object, in order: every patch whose set
/// selector fields (apiVersion, kind, name) all equal the object's *original* ones is merged in,
/// in order; `options.labels` are added to `metadata.labels`, replacing existing values;
/// `options.namespace` is set when `is_namespaced(apiVersion, kind)` and the object has no (or an
/// empty) namespace; finally placeholders are substituted from `options.vars`.
///
/// The input manifests must be valid, and so must the result (including no duplicate objects).
/// Callers without API discovery pass `&|a, k| !is_cluster_scoped(a, k)` as `is_namespaced`.
pub fn customize(
    manifests: &[Value],
    options: &DeployOptions,
    is_namespaced: &dyn Fn(&str, &str) -> bool,
) -> Result<Vec<Value>, CustomizeError> {
    let mut out = Vec::with_capacity(manifests.len());
    for (index, manifest) in manifests.iter().enumerate() {
        validate_at(manifest, Some(index)).map_err(CustomizeError::InvalidManifest)?;
        let mut object = manifest.clone();
        for patch in options
            .patches
            .iter()
            .filter(|patch| selects(patch, manifest))
        {
            merge_patch(&mut object, &patch.patch);
        }
        // A patch may have broken the object's shape: the steps below then leave it alone and
        // the final validation reports it.
        if !options.labels.is_empty()
            && let Some(metadata) = child_object(&mut object, "metadata")
            && let Some(Value::Object(labels)) = child_object(metadata, "labels")
        {
            let added = options.labels.iter();
            labels.extend(added.map(|(key, value)| (key.clone(), Value::from(value.as_str()))));
        }
        let field = |path: &[&str]| str_at(&object, path).unwrap_or_default().to_string();
        let (api_version, kind) = (field(&["apiVersion"]), field(&["kind"]));
        if let Some(namespace) = options.namespace.as_deref().filter(|ns| !ns.is_empty())
            && namespace_unset(&object)
            && is_namespaced(&api_version, &kind)
            && let Some(Value::Object(metadata)) = object.get_mut("metadata")
        {
            metadata.insert("namespace".to_string(), Value::from(namespace));
        }
        substitute(&mut object, &options.vars).map_err(|error| match error {
            CustomizeError::MissingValue { placeholder, .. } => {
                let object = Some(describe(manifest, Some(index)));
                CustomizeError::MissingValue {
                    placeholder,
                    object,
                }
            }
            other => other,
        })?;
        out.push(object);
    }
    validate_manifests(&out).map_err(CustomizeError::InvalidAfterCustomization)?;
    Ok(out)
}

/// Whether every selector field the patch sets equals the object's.
fn selects(patch: &Patch, object: &Value) -> bool {
    let equal = |wanted: &Option<String>, path: &[&str]| {
        wanted
            .as_deref()
            .is_none_or(|wanted| str_at(object, path) == Some(wanted))
    };
    equal(&patch.api_version, &["apiVersion"])
        && equal(&patch.kind, &["kind"])
        && equal(&patch.name, &["metadata", "name"])
}

/// The object under `key` in `value`, created when absent or null; `None` when it is not one.
fn child_object<'a>(value: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    let child = value.as_object_mut()?.entry(key).or_insert(Value::Null);
    if child.is_null() {
        *child = Value::Object(Map::new());
    }
    child.is_object().then_some(child)
}

fn namespace_unset(object: &Value) -> bool {
    match object.pointer("/metadata/namespace") {
        None | Some(Value::Null) => true,
        Some(Value::String(namespace)) => namespace.is_empty(),
        Some(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn deployment(name: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}})
    }

    /// Options, patches or vars written in their JSON wire form.
    fn from_json<T: serde::de::DeserializeOwned>(value: Value) -> T {
        serde_json::from_value(value).expect("test input matches the wire type")
    }

    fn run(manifests: &[Value], options: Value) -> Result<Vec<Value>, CustomizeError> {
        customize(manifests, &from_json(options), &|a, k| {
            !is_cluster_scoped(a, k)
        })
    }

    fn assert_contains(text: impl ToString, part: &str) {
        let text = text.to_string();
        assert!(text.contains(part), "{text:?} does not contain {part:?}");
    }

    /// The value at `pointer` in each object (`null` where absent).
    fn each(objects: &[Value], pointer: &str) -> Value {
        objects
            .iter()
            .map(|o| o.pointer(pointer).cloned().unwrap_or_default())
            .collect()
    }

    #[test]
    fn merge_patch_null_deletes_key() {
        let mut target = json!({"a": 1, "b": {"c": 2, "d": 3}});
        merge_patch(
            &mut target,
            &json!({"a": null, "b": {"c": null}, "missing": null}),
        );
        assert_eq!(target, json!({"b": {"d": 3}}));
    }

    #[test]
    fn merge_patch_non_object_replaces_target() {
        let mut target = json!({"a": 1});
        merge_patch(&mut target, &json!([1, 2]));
        assert_eq!(target, json!([1, 2]));
        let mut target = json!("text");
        merge_patch(&mut target, &json!({"a": {"b": null, "c": 1}}));
        assert_eq!(target, json!({"a": {"c": 1}}));
    }

    #[test]
    fn merge_patch_follows_rfc7386_appendix_examples() {
        // [original, patch, result], as in RFC 7386 appendix A.
        let cases = json!([
            [{"a": "b"}, {"a": "c"}, {"a": "c"}],
            [{"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}],
            [{"a": "b"}, {"a": null}, {}],
            [{"a": "b", "b": "c"}, {"a": null}, {"b": "c"}],
            [{"a": ["b"]}, {"a": "c"}, {"a": "c"}],
            [{"a": "c"}, {"a": ["b"]}, {"a": ["b"]}],
            [{"a": {"b": "c"}}, {"a": {"b": "d", "c": null}}, {"a": {"b": "d"}}],
            [{"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}],
            [["a", "b"], ["c", "d"], ["c", "d"]],
            [{"a": "b"}, ["c"], ["c"]],
            [{"a": "foo"}, null, null],
            [{"a": "foo"}, "bar", "bar"],
            [{"e": null}, {"a": 1}, {"e": null, "a": 1}],
            [[1, 2], {"a": "b", "c": null}, {"a": "b"}],
            [{}, {"a": {"bb": {"ccc": null}}}, {"a": {"bb": {}}}]
        ]);
        let cases: Vec<(Value, Value, Value)> = from_json(cases);
        assert_eq!(cases.len(), 15);
        for (original, patch, expected) in cases {
            let mut target = original.clone();
            merge_patch(&mut target, &patch);
            assert_eq!(target, expected, "{original} patched with {patch}");
        }
    }

    #[test]
    fn namespace_is_set_only_on_namespaced_objects_without_one() {
        let manifests = from_json::<Vec<Value>>(json!([
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "mine"}},
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "r"}},
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": ""}}
        ]));
        let out = run(&manifests, json!({"namespace": "target"})).unwrap();
        let expected = json!(["target", "mine", null, null, "target"]);
        assert_eq!(each(&out, "/metadata/namespace"), expected);
        // Discovery decides: an agent that knows a kind is cluster-scoped keeps it unset.
        let options = from_json(json!({"namespace": "target"}));
        let out = customize(&manifests[..1], &options, &|_, _| false).unwrap();
        assert_eq!(out[0].pointer("/metadata/namespace"), None);
    }

    #[test]
    fn cluster_scoped_kinds_need_the_right_group() {
        let scoped = is_cluster_scoped;
        assert!(scoped("v1", "Namespace"));
        assert!(scoped("rbac.authorization.k8s.io/v1", "ClusterRole"));
        assert!(scoped(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition"
        ));
        assert!(scoped("storage.k8s.io/v1", "StorageClass"));
        assert!(!scoped("example.com/v1", "ClusterRole"));
        assert!(!scoped("apps/v1", "Namespace"));
        assert!(!scoped("v1", "ConfigMap"));
        assert!(!scoped("", ""));
    }

    #[test]
    fn customization_labels_override_manifest_labels() {
        let mut manifest = deployment("web");
        manifest["metadata"]["labels"] = json!({"team": "a", "tier": "web"});
        let options = json!({"labels": {"team": "b"}});
        let out = run(&[manifest, deployment("bare")], options).unwrap();
        let expected = json!([{"team": "b", "tier": "web"}, {"team": "b"}]);
        assert_eq!(each(&out, "/metadata/labels"), expected);
    }

    #[test]
    fn patch_applies_only_to_matching_kind_and_name() {
        let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}});
        let options = json!({"patches": [
            {"kind": "Deployment", "name": "web", "patch": {"spec": {"replicas": 3}}},
            {"patch": {"metadata": {"annotations": {"all": "yes"}}}}
        ]});
        let out = run(&[deployment("web"), deployment("api"), service], options).unwrap();
        assert_eq!(each(&out, "/spec/replicas"), json!([3, null, null]));
        assert_eq!(
            each(&out, "/metadata/annotations/all"),
            json!(["yes", "yes", "yes"])
        );
    }

    #[test]
    fn patches_select_on_the_original_object_and_run_in_order() {
        let options = json!({"patches": [
            {"name": "web", "patch": {"metadata": {"name": "renamed"}, "x": 1}},
            {"apiVersion": "apps/v1", "name": "web", "patch": {"x": 2}},
            {"name": "renamed", "patch": {"x": 3}},
            {"apiVersion": "apps/v2", "patch": {"x": 4}}
        ]});
        let out = run(&[deployment("web")], options).unwrap();
        assert_eq!(
            (&out[0]["metadata"]["name"], &out[0]["x"]),
            (&json!("renamed"), &json!(2))
        );
    }

    #[test]
    fn steps_run_patch_then_labels_then_namespace_then_placeholders() {
        let options = json!({
            "namespace": "ns-${cluster.name}",
            "labels": {"tier": "${values.tier}"},
            "patches": [{"patch": {"metadata": {"labels": {"tier": "x", "at": "${cluster.name}"}}}}],
            "vars": {"cluster.name": "east", "values.tier": "gold"}
        });
        let out = run(&[deployment("web")], options).unwrap();
        let expected = json!({"name": "web", "labels": {"tier": "gold", "at": "east"}, "namespace": "ns-east"});
        assert_eq!(out[0]["metadata"], expected);
    }

    #[test]
    fn placeholders_are_substituted_at_any_depth_but_not_in_keys() {
        let mut value = json!({
            "${cluster.name}": "${cluster.name}",
            "list": [{"deep": "z=${cluster.labels.topology.kubernetes.io/zone}, n=${values.my_k-1}"}],
            "number": 1
        });
        let vars = from_json(json!({
            "cluster.name": "east",
            "cluster.labels.topology.kubernetes.io/zone": "z1",
            "values.my_k-1": "5"
        }));
        substitute(&mut value, &vars).unwrap();
        let expected =
            json!({"${cluster.name}": "east", "list": [{"deep": "z=z1, n=5"}], "number": 1});
        assert_eq!(value, expected);
    }

    #[test]
    fn unknown_placeholder_text_is_left_alone() {
        let text = "${HOME} ${cluster.other} ${values.} ${values.a b} ${cluster.name ${ $${HOME} $";
        let mut value = json!(text);
        substitute(&mut value, &BTreeMap::new()).unwrap();
        assert_eq!(value, json!(text));
        assert!(referenced_vars(&[json!(text)], &[]).is_empty());
    }

    #[test]
    fn escaped_placeholder_is_literal() {
        let mut value = json!("a $${cluster.name} b ${cluster.name} c $$${values.x}");
        let vars = from_json(json!({"cluster.name": "east", "values.x": "X"}));
        substitute(&mut value, &vars).unwrap();
        assert_eq!(value, json!("a ${cluster.name} b east c $${values.x}"));
        let used = referenced_vars(&[json!("$${values.unused} ${values.used}")], &[]);
        assert_eq!(used, BTreeSet::from(["values.used".to_string()]));
    }

    #[test]
    fn missing_label_placeholder_is_an_error_naming_the_label() {
        let mut value = json!({"a": ["${cluster.labels.region}"]});
        let error = substitute(&mut value, &BTreeMap::new()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "placeholder ${cluster.labels.region} has no value: the cluster has no label \"region\"; \
             label the cluster or stop using the placeholder"
        );
    }

    #[test]
    fn missing_value_placeholder_says_to_set_it_on_the_bundle_target() {
        let mut manifest = deployment("web");
        manifest["spec"] = json!({"image": "app:${values.version}"});
        let error = run(&[manifest], json!({})).unwrap_err();
        assert_contains(&error, "${values.version} in Deployment/web has no value");
        assert_contains(
            &error,
            "set customization.values.version on the bundle target",
        );
    }

    #[test]
    fn referenced_vars_finds_placeholders_in_patches() {
        let manifests = [json!({"metadata": {"name": "${cluster.name}"}})];
        let patch = json!([{"patch": {"x": ["${values.replicas}", "${cluster.labels.region}"]}}]);
        let vars: Vec<_> = referenced_vars(&manifests, &from_json::<Vec<Patch>>(patch))
            .into_iter()
            .collect();
        assert_eq!(
            vars,
            ["cluster.labels.region", "cluster.name", "values.replicas"]
        );
    }

    #[test]
    fn duplicate_objects_are_rejected() {
        let mut other_version = deployment("web");
        other_version["apiVersion"] = json!("apps/v1beta2");
        let error = validate_manifests(&[deployment("web"), deployment("api"), other_version]);
        let error = error.unwrap_err();
        assert!(matches!(error, ManifestError::Duplicate { ref group, .. } if group == "apps"));
        assert_contains(
            &error,
            "Deployment/web (index 0) and Deployment/web (index 2)",
        );
        // Another namespace, API group or kind makes another object.
        let mut namespaced = deployment("web");
        namespaced["metadata"]["namespace"] = json!("other");
        let mut other_group = deployment("web");
        other_group["apiVersion"] = json!("example.com/v1");
        let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}});
        let distinct = [deployment("web"), namespaced, other_group, service];
        assert_eq!(validate_manifests(&distinct), Ok(()));
    }

    #[test]
    fn customization_that_creates_duplicates_is_rejected() {
        let mut explicit = deployment("web");
        explicit["metadata"]["namespace"] = json!("target");
        let manifests = [explicit, deployment("web")];
        assert_eq!(validate_manifests(&manifests), Ok(()));
        let error = run(&manifests, json!({"namespace": "target"})).unwrap_err();
        let duplicate = matches!(
            error,
            CustomizeError::InvalidAfterCustomization(ManifestError::Duplicate { .. })
        );
        assert!(duplicate, "{error}");
    }

    #[test]
    fn manifest_without_name_is_rejected() {
        let error = validate_manifest(&json!({"apiVersion": "v1", "kind": "ConfigMap"}));
        let expected = "a ConfigMap object: metadata.name is missing; every object needs a \
                        non-empty string metadata.name";
        assert_eq!(error.unwrap_err().to_string(), expected);
        let empty = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": ""}});
        let error = validate_manifests(&[deployment("a"), empty]).unwrap_err();
        assert_contains(error, "ConfigMap at index 1: metadata.name is empty");
        // generateName is not a name.
        let job =
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"generateName": "r-"}});
        let error = validate_manifest(&job).unwrap_err();
        assert!(matches!(error, ManifestError::GenerateName { .. }));
        assert_contains(error, "names are required");
    }

    #[test]
    fn invalid_shapes_are_rejected_naming_the_object_by_index() {
        let cases = json!([
            [null, "the object at index 0 is null, not a JSON object"],
            [{"kind": "Pod", "metadata": {"name": "p"}}, "Pod/p: apiVersion is missing"],
            [{"apiVersion": 1}, "the object at index 0: apiVersion must be a non-empty string but is a number"],
            [{"apiVersion": "v1", "kind": "Pod", "metadata": []}, "Pod at index 0: metadata must be"],
            [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": 3}},
             "Pod/p: metadata.namespace must be a string but is a number"],
            [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": true}}},
             "Pod/p: metadata.labels.a must be a string but is a boolean"]
        ]);
        let cases: Vec<(Value, String)> = from_json(cases);
        assert_eq!(cases.len(), 6);
        for (manifest, expected) in cases {
            let error = validate_manifests(&[manifest]).unwrap_err().to_string();
            assert!(error.starts_with(&expected), "{error}");
        }
    }

    #[test]
    fn patch_that_breaks_the_manifest_is_an_error() {
        let breaking =
            json!([{"metadata": null}, {"kind": 3}, "text", {"metadata": {"labels": 1}}]);
        for body in from_json::<Vec<Value>>(breaking) {
            let options =
                json!({"namespace": "ns", "labels": {"a": "b"}, "patches": [{"patch": body}]});
            let error = run(&[deployment("web")], options).unwrap_err();
            let invalid = matches!(error, CustomizeError::InvalidAfterCustomization(_));
            assert!(invalid, "{body}: {error}");
        }
        let error = run(&[json!([])], json!({})).unwrap_err();
        let invalid = matches!(
            error,
            CustomizeError::InvalidManifest(ManifestError::NotAnObject { .. })
        );
        assert!(invalid, "{error}");
    }

    #[test]
    fn customize_does_not_modify_input() {
        let mut manifest = deployment("web");
        manifest["spec"] = json!({"host": "${cluster.name}", "drop": 1});
        let manifests = vec![manifest];
        let before = manifests.clone();
        let options = json!({
            "namespace": "ns",
            "labels": {"a": "b"},
            "patches": [{"patch": {"spec": {"drop": null}}}],
            "vars": {"cluster.name": "east"}
        });
        let out = run(&manifests, options).unwrap();
        assert_eq!(manifests, before);
        assert_eq!(out[0]["spec"], json!({"host": "east"}));
    }
}
