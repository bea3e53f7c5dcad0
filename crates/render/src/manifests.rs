//! Turning YAML and JSON text into checked, ordered Kubernetes manifests.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::RenderError;

/// One manifest and where it came from, for error messages.
#[derive(Debug, Clone)]
pub(crate) struct Manifest {
    pub value: Value,
    /// The file (relative to the repository root) or folder it came from.
    pub file: String,
    /// Where in that file: `document 2`, `helm template output document 5`.
    pub place: String,
}

/// YAML parsing as Kubernetes does it for untyped documents: YAML 1.1 octal (`0644` is 420, as
/// in `defaultMode`) and booleans (`on`, `yes`). With `strict_booleans`, only `true`/`false` are
/// booleans: how a typed field reads `name: off`.
fn yaml_options(strict_booleans: bool) -> serde_saphyr::Options {
    serde_saphyr::options! { legacy_octal_numbers: true, strict_booleans: strict_booleans }
}

/// The non-empty documents of a YAML stream, each with the line its content starts on.
/// A syntax error names `file` and the line.
pub(crate) fn split_documents(file: &str, text: &str) -> Result<Vec<(usize, Value)>, RenderError> {
    parse_documents(file, text, false)
}

/// [`split_documents`] with YAML 1.2 booleans only (`off` stays a string).
pub(crate) fn split_documents_strict(
    file: &str,
    text: &str,
) -> Result<Vec<(usize, Value)>, RenderError> {
    parse_documents(file, text, true)
}

fn parse_documents(
    file: &str,
    text: &str,
    strict_booleans: bool,
) -> Result<Vec<(usize, Value)>, RenderError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // Split at document markers ourselves, so every document keeps its line number even when
    // empty documents are skipped. A `---` or `...` at the start of a line is always a marker.
    let mut pieces: Vec<(usize, String)> = vec![(1, String::new())];
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        let is_marker = |marker: &str| {
            bare == marker
                || bare
                    .strip_prefix(marker)
                    .is_some_and(|rest| rest.starts_with([' ', '\t']))
        };
        // Directives (`%YAML 1.2`) belong to the document their `---` starts.
        let only_directives = pieces.last().is_some_and(|(_, piece)| {
            piece.lines().any(|l| l.starts_with('%'))
                && piece
                    .lines()
                    .all(|l| l.starts_with('%') || l.trim().is_empty() || l.trim().starts_with('#'))
        });
        if is_marker("---") && only_directives {
            if let Some((_, piece)) = pieces.last_mut() {
                piece.push_str(line);
            }
        } else if is_marker("---") {
            pieces.push((index + 1, line.to_string()));
        } else if is_marker("...") {
            pieces.push((index + 2, String::new()));
        } else if let Some((_, piece)) = pieces.last_mut() {
            piece.push_str(line);
        }
    }
    let mut documents = Vec::new();
    for (start, piece) in pieces {
        let values: Vec<Value> =
            serde_saphyr::from_multiple_with_options(&piece, yaml_options(strict_booleans))
                .map_err(|error| yaml_error(file, &error, start - 1))?;
        let first_line = start + content_offset(&piece);
        documents.extend(
            values
                .into_iter()
                .filter(|value| !value.is_null())
                .map(|value| (first_line, value)),
        );
    }
    Ok(documents)
}

/// How many lines of `piece` come before its first content line (markers, directives, blanks,
/// comments).
fn content_offset(piece: &str) -> usize {
    piece
        .lines()
        .position(|line| {
            let line = line.trim();
            let line = line.strip_prefix("---").map_or(line, str::trim);
            !line.is_empty() && !line.starts_with('#') && !line.starts_with('%')
        })
        .unwrap_or(0)
}

fn yaml_error(file: &str, error: &serde_saphyr::Error, line_offset: usize) -> RenderError {
    let text = error.to_string();
    let first = text.lines().next().unwrap_or_default();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    // The message starts with "line L column C: "; the location is re-added with the file's line.
    let message = match first.split_once(": ") {
        Some((place, rest)) if place.starts_with("line ") => rest,
        _ => first,
    };
    match error.location() {
        Some(location) if location.line() > 0 => RenderError::in_file(
            file,
            format!(
                "invalid YAML at line {} column {}: {message}",
                location.line() as usize + line_offset,
                location.column()
            ),
        ),
        _ => RenderError::in_file(file, format!("invalid YAML: {message}")),
    }
}

/// The documents of a `.json` file (one).
pub(crate) fn json_document(file: &str, text: &str) -> Result<Vec<(usize, Value)>, RenderError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let value: Value = serde_json::from_str(text).map_err(|error| {
        RenderError::in_file(
            file,
            format!(
                "invalid JSON at line {} column {}: {error}",
                error.line(),
                error.column()
            ),
        )
    })?;
    Ok(if value.is_null() {
        Vec::new()
    } else {
        vec![(1, value)]
    })
}

/// Appends the manifests among `documents` to `out`. A document with none of `apiVersion`, `kind`
/// and `metadata` is not a manifest (a values file, a config) and is skipped; one with only some
/// of `apiVersion`, `kind` and `metadata.name` is an error; a `kind: List` contributes its items.
/// `prefix` starts the place of each document (`helm template output `).
pub(crate) fn extract(
    file: &str,
    prefix: &str,
    documents: Vec<(usize, Value)>,
    out: &mut Vec<Manifest>,
) -> Result<(), RenderError> {
    for (index, (line, document)) in documents.into_iter().enumerate() {
        let place = format!("{prefix}document {} (line {line})", index + 1);
        let Value::Object(map) = &document else {
            continue;
        };
        let present = |key: &str| map.get(key).is_some_and(|value| !value.is_null());
        if !present("apiVersion") && !present("kind") && !present("metadata") {
            continue;
        }
        if map.get("kind").and_then(Value::as_str) == Some("List")
            && let Some(Value::Array(items)) = map.get("items")
        {
            for (item_index, item) in items.iter().enumerate() {
                let place = format!("{place} item {}", item_index + 1);
                check(file, &place, item)?;
                out.push(Manifest {
                    value: item.clone(),
                    file: file.to_string(),
                    place,
                });
            }
            continue;
        }
        check(file, &place, &document)?;
        out.push(Manifest {
            value: document,
            file: file.to_string(),
            place,
        });
    }
    Ok(())
}

/// Checks one manifest: the three identifying fields first (the usual mistake), then the shape
/// flotilla requires.
fn check(file: &str, place: &str, manifest: &Value) -> Result<(), RenderError> {
    let text = |pointer: &str| {
        manifest
            .pointer(pointer)
            .and_then(Value::as_str)
            .filter(|text| !text.is_empty())
    };
    let generate_name = manifest.pointer("/metadata/generateName").is_some();
    for (pointer, field) in [
        ("/apiVersion", "apiVersion"),
        ("/kind", "kind"),
        ("/metadata/name", "metadata.name"),
    ] {
        let missing = match manifest.pointer(pointer) {
            None | Some(Value::Null) => true,
            Some(Value::String(text)) => text.is_empty(),
            Some(_) => false,
        };
        if missing && !(field == "metadata.name" && generate_name) {
            return Err(RenderError::in_file(
                file,
                format!("{place} has no {field}"),
            ));
        }
    }
    flotilla_core::customize::validate_manifest(manifest).map_err(|error| {
        let what = match (text("/kind"), text("/metadata/name")) {
            (Some(kind), Some(name)) => format!(" ({kind}/{name})"),
            _ => String::new(),
        };
        RenderError::in_file(file, format!("{place}{what}: {error}"))
    })
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn describe(manifest: &Value) -> String {
    format!(
        "{} {}",
        str_at(manifest, "/kind"),
        str_at(manifest, "/metadata/name")
    )
}

/// Finishes a rendering: forces `namespace` on every object (a cluster-scoped object is then an
/// error, as in Fleet), rejects duplicate objects, orders the objects (Namespaces, then
/// CustomResourceDefinitions, then everything else, each by apiVersion, kind, namespace and name)
/// and sorts every object's keys, so equal inputs always give equal output. `fleet_yaml` names
/// the file that forced the namespace.
pub(crate) fn finish(
    mut manifests: Vec<Manifest>,
    namespace: Option<&str>,
    fleet_yaml: &str,
) -> Result<Vec<Value>, RenderError> {
    if let Some(namespace) = namespace {
        for manifest in &mut manifests {
            let api_version = str_at(&manifest.value, "/apiVersion").to_string();
            let kind = str_at(&manifest.value, "/kind").to_string();
            if flotilla_core::customize::is_cluster_scoped(&api_version, &kind) {
                return Err(RenderError::in_file(
                    fleet_yaml,
                    format!(
                        "namespace is forced to {namespace} but the folder has cluster-scoped {} \
                         ({} {}): use defaultNamespace instead of namespace, or move the object \
                         to another folder",
                        describe(&manifest.value),
                        manifest.file,
                        manifest.place
                    ),
                ));
            }
            if let Some(Value::Object(metadata)) = manifest.value.get_mut("metadata") {
                metadata.insert("namespace".into(), Value::from(namespace));
            }
        }
    }
    type Key = (String, String, String, String);
    let mut seen: BTreeMap<Key, usize> = BTreeMap::new();
    for (index, manifest) in manifests.iter().enumerate() {
        let value = &manifest.value;
        let api_version = str_at(value, "/apiVersion");
        let group = api_version.split_once('/').map_or("", |(group, _)| group);
        let key = (
            group.to_string(),
            str_at(value, "/kind").to_string(),
            str_at(value, "/metadata/namespace").to_string(),
            str_at(value, "/metadata/name").to_string(),
        );
        if let Some(&first) = seen.get(&key) {
            let first = &manifests[first];
            let namespace = match key.2.as_str() {
                "" => String::new(),
                namespace => format!(" in namespace {namespace}"),
            };
            return Err(RenderError::in_file(
                manifest.file.clone(),
                format!(
                    "{} {}{namespace} is defined twice: {} {} and {} {}; remove one or rename it",
                    manifest.place,
                    describe(value),
                    first.file,
                    first.place,
                    manifest.file,
                    manifest.place
                ),
            ));
        }
        seen.insert(key, index);
    }
    let mut values: Vec<Value> = manifests
        .into_iter()
        .map(|manifest| sorted_keys(manifest.value))
        .collect();
    values.sort_by_cached_key(order_key);
    Ok(values)
}

/// The position of a manifest in a rendering.
fn order_key(value: &Value) -> (u8, String, String, String, String) {
    let api_version = str_at(value, "/apiVersion");
    let kind = str_at(value, "/kind");
    let rank = match (api_version.split_once('/').map_or("", |(g, _)| g), kind) {
        ("", "Namespace") => 0,
        ("apiextensions.k8s.io", "CustomResourceDefinition") => 1,
        _ => 2,
    };
    (
        rank,
        api_version.to_string(),
        kind.to_string(),
        str_at(value, "/metadata/namespace").to_string(),
        str_at(value, "/metadata/name").to_string(),
    )
}

/// `value` with every object's keys in sorted order (whatever map order serde_json is built with).
pub(crate) fn sorted_keys(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(key, value)| (key, sorted_keys(value)))
                    .collect::<Map<String, Value>>(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted_keys).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn documents_keep_their_line_numbers_across_empty_ones() {
        let text = "# header\n---\na: 1\n---\n---\n\nb: 2\n...\n---\nc: 3\n";
        let documents = split_documents("f.yaml", text).unwrap();
        let lines: Vec<usize> = documents.iter().map(|(line, _)| *line).collect();
        assert_eq!(lines, [3, 7, 10]);
        assert_eq!(documents[2].1, json!({"c": 3}));
    }

    #[test]
    fn directives_stay_with_their_document() {
        let documents = split_documents("f.yaml", "%YAML 1.2\n---\na: 1\n---\nb: 2\n").unwrap();
        let values: Vec<&Value> = documents.iter().map(|(_, value)| value).collect();
        assert_eq!(values, [&json!({"a": 1}), &json!({"b": 2})]);
        assert_eq!(documents[0].0, 3);
    }

    #[test]
    fn yaml_errors_name_the_file_and_the_line_in_the_file() {
        let text = "a: 1\n---\nb: [1, 2\n";
        let error = split_documents("apps/x.yaml", text).unwrap_err();
        assert_eq!(error.file.as_deref(), Some("apps/x.yaml"));
        assert!(error.message.contains("line 3"), "{error}");
        assert!(error.message.contains("unclosed bracket"), "{error}");
    }

    #[test]
    fn octal_numbers_read_as_kubernetes_reads_them() {
        let documents = split_documents("f.yaml", "mode: 0644\n").unwrap();
        assert_eq!(documents[0].1, json!({"mode": 420}));
    }

    #[test]
    fn order_puts_namespaces_then_crds_first_and_keys_are_sorted() {
        let manifest = |value: Value| Manifest {
            value,
            file: "f".into(),
            place: "p".into(),
        };
        let values = finish(
            vec![
                manifest(json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "b"}})),
                manifest(json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "x"}})),
                manifest(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "z"}})),
                manifest(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}})),
            ],
            None,
            "fleet.yaml",
        )
        .unwrap();
        let names: Vec<&str> = values.iter().map(|v| str_at(v, "/metadata/name")).collect();
        assert_eq!(names, ["z", "x", "a", "b"]);
        let keys: Vec<&String> = values[3].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["apiVersion", "kind", "metadata"]);
    }
}
