//! Fleet's raw-YAML overlays: `overlays/<name>/` files that replace, add or patch the folder's files.
//!
//! For each overlay, in order: a file `overlays/<name>/<path>` whose name contains `_patch.`
//! patches the file `<path>` with `_patch.` replaced by `.` (which must exist); any other file
//! replaces or adds `<path>`. A patch is a JSON patch (RFC 6902) when it is a list, otherwise a
//! merge patch: for custom resources a plain RFC 7386 merge (both from the `json-patch` crate);
//! for Kubernetes' built-in kinds a strategic merge, in the manner of Fleet's: RFC 7386, except
//! that the lists Kubernetes merges by key (containers and volumes by name, ports by port…) are
//! merged item by item, with `$patch: delete` removing an item and `$patch: replace` replacing a
//! mapping (`$` keys are directives and never reach the result).

use std::collections::BTreeMap;
use std::path::PathBuf;

use json_patch::{CopyOperation, MoveOperation, PatchErrorKind, PatchOperation};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::RenderError;

/// A file of the folder: still on disk, or text produced by an overlay patch.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    Disk(PathBuf),
    Text(String),
}

impl Source {
    pub(crate) fn read(&self, shown: &str) -> Result<String, RenderError> {
        match self {
            Source::Text(text) => Ok(text.clone()),
            Source::Disk(path) => {
                let bytes = std::fs::read(path).map_err(|error| {
                    RenderError::in_file(shown, format!("cannot read: {error}"))
                })?;
                String::from_utf8(bytes)
                    .map_err(|_| RenderError::in_file(shown, "is not UTF-8 text"))
            }
        }
    }
}

const OVERLAYS: &str = "overlays/";

/// Applies `overlays` to `files` (keyed by path relative to the folder). `shown` turns such a
/// path into one relative to the repository root, for messages.
pub(crate) fn apply(
    files: &mut BTreeMap<String, Source>,
    overlays: &[String],
    shown: &dyn Fn(&str) -> String,
) -> Result<(), RenderError> {
    for overlay in overlays {
        let prefix = format!("{OVERLAYS}{overlay}/");
        let entries: Vec<(String, Source)> = files
            .range(prefix.clone()..)
            .take_while(|(path, _)| path.starts_with(&prefix))
            .map(|(path, source)| (path.clone(), source.clone()))
            .collect();
        if entries.is_empty() {
            return Err(RenderError::in_file(
                shown(&format!("{OVERLAYS}{overlay}")),
                format!(
                    "overlay {overlay:?} has no files: create the folder or remove the overlay"
                ),
            ));
        }
        for (path, source) in entries {
            let relative = &path[prefix.len()..];
            let Some(target) = patch_target(relative) else {
                files.insert(relative.to_string(), source);
                continue;
            };
            let Some(base) = files.get(&target) else {
                return Err(RenderError::in_file(
                    shown(&path),
                    format!("patches {target}, which the folder does not have"),
                ));
            };
            let base_text = base.read(&shown(&target))?;
            let patch_text = source.read(&shown(&path))?;
            let patched = patch_file(&shown(&target), &base_text, &shown(&path), &patch_text)?;
            files.insert(target, Source::Text(patched));
        }
    }
    Ok(())
}

/// The file a `_patch.` file patches: the same folder, `_patch.` replaced by `.` in the name.
fn patch_target(relative: &str) -> Option<String> {
    let (dir, name) = match relative.rsplit_once('/') {
        Some((dir, name)) => (Some(dir), name),
        None => (None, relative),
    };
    if !name.contains("_patch.") {
        return None;
    }
    let name = name.replacen("_patch.", ".", 1);
    Some(match dir {
        Some(dir) => format!("{dir}/{name}"),
        None => name,
    })
}

/// The one document of a file (patching works on single-document files).
fn single_document(shown: &str, text: &str) -> Result<Value, RenderError> {
    let documents = if shown.ends_with(".json") {
        crate::manifests::json_document(shown, text)?
    } else {
        crate::manifests::split_documents(shown, text)?
    };
    match documents.len() {
        1 => Ok(documents
            .into_iter()
            .next()
            .map(|(_, v)| v)
            .unwrap_or_default()),
        count => Err(RenderError::in_file(
            shown,
            format!("has {count} documents; an overlay patch needs a file with exactly one"),
        )),
    }
}

/// Patches the text of `base` with the text of `patch`; the result is JSON text.
fn patch_file(
    base_shown: &str,
    base_text: &str,
    patch_shown: &str,
    patch_text: &str,
) -> Result<String, RenderError> {
    let mut base = single_document(base_shown, base_text)?;
    let patch = single_document(patch_shown, patch_text)?;
    match &patch {
        Value::Array(operations) => json_patch(&mut base, operations)
            .map_err(|problem| RenderError::in_file(patch_shown, problem))?,
        Value::Object(_) => {
            let api_version = base.get("apiVersion").and_then(Value::as_str).unwrap_or("");
            if is_builtin_group(api_version) {
                strategic_merge(&mut base, &patch);
            } else {
                json_patch::merge(&mut base, &patch);
            }
        }
        other => {
            return Err(RenderError::in_file(
                patch_shown,
                format!(
                    "is {}; a patch is a mapping (merge patch) or a list (JSON patch)",
                    crate::fleetyaml::type_name(other)
                ),
            ));
        }
    }
    Ok(serde_json::to_string(&base).unwrap_or_default())
}

/// Whether `apiVersion` is in a Kubernetes built-in API group (the core group, an undotted group
/// such as `apps`, or a `*.k8s.io` group); custom resources get plain merge patches.
fn is_builtin_group(api_version: &str) -> bool {
    match api_version.split_once('/') {
        None => !api_version.is_empty(),
        Some((group, _)) => !group.contains('.') || group.ends_with(".k8s.io"),
    }
}

/// The key Kubernetes merges a list field by, when every patch item carries it.
fn merge_key(field: &str, items: &[Value]) -> Option<&'static str> {
    let key = match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "hostAliases" => "ip",
        // Container ports merge by containerPort, Service ports by port.
        "ports" if items.iter().all(|item| item.get("containerPort").is_some()) => "containerPort",
        "ports" => "port",
        _ => return None,
    };
    items
        .iter()
        .all(|item| item.get(key).is_some())
        .then_some(key)
}

/// Whether `value` carries the strategic directive `$patch: <directive>`.
fn directive(value: &Value, directive: &str) -> bool {
    value.get("$patch").and_then(Value::as_str) == Some(directive)
}

/// `value` without `$`-directive keys, at any depth.
fn without_directives(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(key, _)| !key.starts_with('$'))
                .map(|(key, value)| (key.clone(), without_directives(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_directives).collect()),
        other => other.clone(),
    }
}

/// A strategic merge patch (see the module docs): RFC 7386 with keyed list merging and `$patch`
/// directives.
fn strategic_merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = without_directives(patch);
        return;
    };
    if directive(patch, "replace") {
        *target = without_directives(patch);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target_map) = target else {
        return;
    };
    for (key, value) in patch_map {
        if key.starts_with('$') {
            continue;
        }
        if value.is_null() {
            target_map.remove(key);
            continue;
        }
        if let (Value::Array(items), Some(Value::Array(existing))) =
            (value, target_map.get_mut(key))
            && let Some(merge_by) = merge_key(key, items)
        {
            merge_list(existing, items, merge_by);
            continue;
        }
        let slot = target_map.entry(key.clone()).or_insert(Value::Null);
        if value.is_object() {
            strategic_merge(slot, value);
        } else {
            *slot = without_directives(value);
        }
    }
}

/// Merges patch `items` into `existing` by the `key` field.
fn merge_list(existing: &mut Vec<Value>, items: &[Value], key: &str) {
    for item in items {
        let wanted = item.get(key);
        let position = existing.iter().position(|old| old.get(key) == wanted);
        match position {
            Some(index) if directive(item, "delete") => {
                existing.remove(index);
            }
            None if directive(item, "delete") => {}
            Some(index) => strategic_merge(&mut existing[index], item),
            None => existing.push(without_directives(item)),
        }
    }
}

/// Applies a JSON patch (RFC 6902) to `document` with the `json-patch` crate. Problems name the
/// operation by its 1-based position; after one, `document` may be partly patched.
fn json_patch(document: &mut Value, operations: &[Value]) -> Result<(), String> {
    let at =
        |index: usize, problem: String| format!("JSON patch operation {}: {problem}", index + 1);
    let operations = operations
        .iter()
        .enumerate()
        .map(|(index, operation)| {
            PatchOperation::deserialize(operation).map_err(|error| at(index, error.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Without the crate's undo stack: `patch_file` drops the document on an error, and `patch`
    // panics should an undo ever fail, which a render of user files must not risk.
    json_patch::patch_unsafe(document, &operations).map_err(|error| {
        let problem = match operations.get(error.operation) {
            Some(operation) => patch_problem(operation, &error.kind),
            None => error.to_string(),
        };
        at(error.operation, problem)
    })
}

/// What went wrong when `operation` failed with `kind`, naming the pointers involved.
fn patch_problem(operation: &PatchOperation, kind: &PatchErrorKind) -> String {
    let path = operation.path();
    match (kind, operation) {
        (PatchErrorKind::TestFailed, _) => format!("test failed: the value at {path} differs"),
        (PatchErrorKind::InvalidFromPointer, PatchOperation::Move(MoveOperation { from, .. }))
        | (PatchErrorKind::InvalidFromPointer, PatchOperation::Copy(CopyOperation { from, .. })) => {
            format!("\"from\" {from} does not exist")
        }
        (PatchErrorKind::CannotMoveInsideItself, _) => {
            format!("cannot move a value inside itself (to {path})")
        }
        (
            PatchErrorKind::InvalidPointer,
            PatchOperation::Add(_) | PatchOperation::Move(_) | PatchOperation::Copy(_),
        ) => format!(
            "cannot add at {path}: the parent does not exist or is a scalar, or the index is out of range"
        ),
        (PatchErrorKind::InvalidPointer, PatchOperation::Remove(_)) if path.is_root() => {
            "cannot remove the whole document".to_string()
        }
        (PatchErrorKind::InvalidPointer, _) => format!("{path} does not exist"),
        (other, _) => format!("{other} at {path}"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn patch_target_replaces_the_first_patch_marker() {
        assert_eq!(patch_target("web_patch.yaml").as_deref(), Some("web.yaml"));
        assert_eq!(
            patch_target("sub/svc_patch.json").as_deref(),
            Some("sub/svc.json")
        );
        assert_eq!(patch_target("web.yaml"), None);
    }

    #[test]
    fn strategic_merge_merges_containers_by_name_for_builtin_kinds() {
        let mut base = json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"template": {"spec": {
            "containers": [{"name": "web", "image": "web:1"}, {"name": "side", "image": "side:1"}]}}}});
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "web", "image": "web:2"}, {"name": "side", "$patch": "delete"}, {"name": "new", "image": "n"}]}}}});
        strategic_merge(&mut base, &patch);
        assert_eq!(
            base["spec"]["template"]["spec"]["containers"],
            json!([{"name": "web", "image": "web:2"}, {"name": "new", "image": "n"}])
        );
        // Custom resources get plain merge patches: the list is replaced.
        let patched = patch_file(
            "cr.yaml",
            "apiVersion: example.com/v1\nkind: Thing\nspec:\n  containers: [{name: a}, {name: b}]\n",
            "cr_patch.yaml",
            "spec:\n  containers: [{name: a, x: 1}]\n",
        )
        .unwrap();
        let custom: Value = serde_json::from_str(&patched).unwrap();
        assert_eq!(custom["spec"]["containers"], json!([{"name": "a", "x": 1}]));
    }

    #[test]
    fn json_patch_applies_rfc6902_operations() {
        let mut document = json!({"a": {"b": [1, 2]}, "c": 1});
        let operations = json!([
            {"op": "add", "path": "/a/b/-", "value": 3},
            {"op": "replace", "path": "/c", "value": 2},
            {"op": "copy", "from": "/c", "path": "/d"},
            {"op": "move", "from": "/d", "path": "/a/e"},
            {"op": "remove", "path": "/a/b/0"},
            {"op": "test", "path": "/a/b", "value": [2, 3]},
            {"op": "add", "path": "/x~1y", "value": true}
        ]);
        json_patch(&mut document, operations.as_array().unwrap()).unwrap();
        assert_eq!(
            document,
            json!({"a": {"b": [2, 3], "e": 2}, "c": 2, "x/y": true})
        );
        let error = json_patch(&mut document, &[json!({"op": "remove", "path": "/nope"})]);
        assert!(error.unwrap_err().contains("/nope does not exist"));
    }

    #[test]
    fn custom_resource_merge_patch_is_plain_rfc7386() {
        let patched = patch_file(
            "cr.yaml",
            "apiVersion: example.com/v1\nkind: Thing\nspec: {keep: 1, drop: 2, list: [1, 2]}\n",
            "cr_patch.yaml",
            "spec: {drop: null, list: [3], $patch: replace}\n",
        )
        .unwrap();
        let custom: Value = serde_json::from_str(&patched).unwrap();
        // RFC 7386: `null` deletes, lists are replaced, and `$patch` is an ordinary key, not a
        // strategic directive.
        assert_eq!(
            custom["spec"],
            json!({"keep": 1, "list": [3], "$patch": "replace"})
        );
    }

    #[test]
    fn strategic_merge_drops_directive_keys_for_builtin_kinds() {
        let mut base =
            json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "1", "b": "2"}});
        strategic_merge(&mut base, &json!({"data": {"$patch": "replace", "c": "3"}}));
        assert_eq!(base["data"], json!({"c": "3"}));
    }

    #[test]
    fn json_patch_failure_names_the_operation_and_the_pointer() {
        let original = json!({"a": [1], "b": "x"});
        let failing = |operations: Value| {
            let mut document = original.clone();
            json_patch(&mut document, operations.as_array().unwrap()).unwrap_err()
        };
        let error = failing(json!([
            {"op": "add", "path": "/c", "value": 1},
            {"op": "test", "path": "/b", "value": "y"}
        ]));
        assert_eq!(
            error,
            "JSON patch operation 2: test failed: the value at /b differs"
        );
        let error = failing(json!([{"op": "add", "path": "/a/5", "value": 1}]));
        assert!(
            error.starts_with("JSON patch operation 1: cannot add at /a/5"),
            "{error}"
        );
        let error = failing(json!([{"op": "move", "from": "/nope", "path": "/c"}]));
        assert_eq!(
            error,
            "JSON patch operation 1: \"from\" /nope does not exist"
        );
        let error = failing(json!([{"op": "frobnicate", "path": "/a"}]));
        assert!(
            error.starts_with("JSON patch operation 1: unknown variant `frobnicate`"),
            "{error}"
        );
        let error = failing(json!([{"op": "remove", "path": "a"}]));
        assert!(error.starts_with("JSON patch operation 1: "), "{error}");
        assert!(error.contains("does not start with a slash"), "{error}");
        let error = failing(json!([{"op": "remove", "path": ""}]));
        assert_eq!(
            error,
            "JSON patch operation 1: cannot remove the whole document"
        );
        let matching_test = [json!({"op": "test", "path": "/a/0", "value": 1})];
        assert_eq!(json_patch(&mut original.clone(), &matching_test), Ok(()));
    }

    #[test]
    fn json_patch_pointers_follow_rfc6901_escapes_and_indices() {
        let mut document = json!({"a~b": {"c/d": 1}, "list": [1, 2]});
        let operations = json!([
            {"op": "copy", "from": "/a~0b/c~1d", "path": "/~01"},
            {"op": "add", "path": "/list/-", "value": 3},
            {"op": "remove", "path": "/list/0"}
        ]);
        json_patch(&mut document, operations.as_array().unwrap()).unwrap();
        assert_eq!(
            document,
            json!({"a~b": {"c/d": 1}, "~1": 1, "list": [2, 3]})
        );
        // A leading zero is not an array index (RFC 6901 section 4).
        let error = json_patch(
            &mut document,
            &[json!({"op": "remove", "path": "/list/01"})],
        )
        .unwrap_err();
        assert_eq!(error, "JSON patch operation 1: /list/01 does not exist");
    }
}
