//! Fleet's raw-YAML overlays: `overlays/<name>/` files that replace, add or patch the folder's files.
//!
//! For each overlay, in order: a file `overlays/<name>/<path>` whose name contains `_patch.`
//! patches the file `<path>` with `_patch.` replaced by `.` (which must exist); any other file
//! replaces or adds `<path>`. A patch is a JSON patch (RFC 6902) when it is a list, otherwise a
//! merge patch: RFC 7386 merge, except that for Kubernetes' built-in kinds the lists Kubernetes
//! merges by key (containers and volumes by name, ports by port…) are merged item by item, as a
//! strategic merge patch does, with `$patch: delete` removing an item and `$patch: replace`
//! replacing a mapping.

use std::collections::BTreeMap;
use std::path::PathBuf;

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
            let strategic = is_builtin_group(api_version);
            merge(&mut base, &patch, strategic);
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

/// A merge patch (RFC 7386), with keyed list merging when `strategic` (see the module docs).
fn merge(target: &mut Value, patch: &Value, strategic: bool) {
    let Value::Object(patch_map) = patch else {
        *target = without_directives(patch);
        return;
    };
    if strategic && directive(patch, "replace") {
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
        if strategic
            && let (Value::Array(items), Some(Value::Array(existing))) =
                (value, target_map.get_mut(key))
            && let Some(merge_by) = merge_key(key, items)
        {
            merge_list(existing, items, merge_by);
            continue;
        }
        let slot = target_map.entry(key.clone()).or_insert(Value::Null);
        if value.is_object() {
            merge(slot, value, strategic);
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
            Some(index) => merge(&mut existing[index], item, true),
            None => existing.push(without_directives(item)),
        }
    }
}

/// Applies a JSON patch (RFC 6902) to `document`.
fn json_patch(document: &mut Value, operations: &[Value]) -> Result<(), String> {
    for (index, operation) in operations.iter().enumerate() {
        let at = |problem: String| format!("JSON patch operation {}: {problem}", index + 1);
        let field = |name: &str| {
            operation
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| at(format!("has no string {name:?}")))
        };
        let op = field("op")?;
        let path = parse_pointer(field("path")?).map_err(&at)?;
        let value = || {
            operation
                .get("value")
                .cloned()
                .ok_or_else(|| at("has no \"value\"".to_string()))
        };
        match op {
            "add" => add(document, &path, value()?).map_err(&at)?,
            "remove" => {
                remove(document, &path).map_err(&at)?;
            }
            "replace" => {
                remove(document, &path).map_err(&at)?;
                add(document, &path, value()?).map_err(&at)?;
            }
            "move" | "copy" => {
                let from = parse_pointer(field("from")?).map_err(&at)?;
                let moved = if op == "move" {
                    remove(document, &from).map_err(&at)?
                } else {
                    get(document, &from)
                        .cloned()
                        .ok_or_else(|| at("\"from\" does not exist".into()))?
                };
                add(document, &path, moved).map_err(&at)?;
            }
            "test" => {
                if get(document, &path) != Some(&value()?) {
                    return Err(at("test failed: the value differs".into()));
                }
            }
            other => return Err(at(format!("unknown op {other:?}"))),
        }
    }
    Ok(())
}

fn parse_pointer(pointer: &str) -> Result<Vec<String>, String> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(format!(
            "path {pointer:?} is not a JSON pointer (start it with /)"
        ));
    };
    Ok(rest
        .split('/')
        .map(|token| token.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn get<'a>(document: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(document, |value, token| match value {
        Value::Object(map) => map.get(token),
        Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

fn get_mut<'a>(document: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(document, |value, token| match value {
        Value::Object(map) => map.get_mut(token),
        Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
        _ => None,
    })
}

fn add(document: &mut Value, path: &[String], value: Value) -> Result<(), String> {
    let Some((last, parent_path)) = path.split_last() else {
        *document = value;
        return Ok(());
    };
    let parent = get_mut(document, parent_path)
        .ok_or_else(|| format!("the parent of /{} does not exist", path.join("/")))?;
    match parent {
        Value::Object(map) => {
            map.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(items) if last == "-" => {
            items.push(value);
            Ok(())
        }
        Value::Array(items) => match last.parse::<usize>() {
            Ok(index) if index <= items.len() => {
                items.insert(index, value);
                Ok(())
            }
            _ => Err(format!("index {last} is out of range")),
        },
        _ => Err(format!(
            "cannot add below a scalar at /{}",
            parent_path.join("/")
        )),
    }
}

fn remove(document: &mut Value, path: &[String]) -> Result<Value, String> {
    let Some((last, parent_path)) = path.split_last() else {
        return Ok(std::mem::take(document));
    };
    let missing = || format!("/{} does not exist", path.join("/"));
    match get_mut(document, parent_path).ok_or_else(missing)? {
        Value::Object(map) => map.remove(last).ok_or_else(missing),
        Value::Array(items) => match last.parse::<usize>() {
            Ok(index) if index < items.len() => Ok(items.remove(index)),
            _ => Err(missing()),
        },
        _ => Err(missing()),
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
        merge(&mut base, &patch, true);
        assert_eq!(
            base["spec"]["template"]["spec"]["containers"],
            json!([{"name": "web", "image": "web:2"}, {"name": "new", "image": "n"}])
        );
        // Custom resources get plain merge patches: the list is replaced.
        let mut custom = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        merge(
            &mut custom,
            &json!({"spec": {"containers": [{"name": "a", "x": 1}]}}),
            false,
        );
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
}
