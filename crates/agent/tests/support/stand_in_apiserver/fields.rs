//! Field paths and field sets: the small part of server-side apply the stand-in imitates.
//!
//! A field is named by a [`Path`] from the object root. Lists whose items all carry a merge key
//! (`name`, `containerPort`, `mountPath`, ...) are addressed per item, like the real `k:{..}`
//! entries of `managedFields`; every other list is one atomic field. Merging replaces lists
//! whole (the brief's approximation of SSA), but ownership, removal and `managedFields` are
//! tracked per keyed item so that drift detection built on `managedFields` sees realistic sets.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

/// One step of a [`Path`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Seg {
    /// A map key (`f:<name>` in FieldsV1).
    Field(String),
    /// A list item by its merge key, as compact JSON, e.g. `{"name":"nginx"}` (`k:<json>`).
    Key(String),
}

pub type Path = Vec<Seg>;

/// Whether one path is an ancestor of (or equal to) the other.
pub fn overlaps(a: &[Seg], b: &[Seg]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// The dotted form used in conflict messages: `.spec.containers[name="nginx"].image`.
pub fn display(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Field(name) => {
                out.push('.');
                out.push_str(name);
            }
            Seg::Key(key) => {
                let fields: Map<String, Value> = serde_json::from_str(key).unwrap_or_default();
                let inner: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                out.push_str(&format!("[{}]", inner.join(",")));
            }
        }
    }
    out
}

/// The merge key of a list item, if it has one we know.
fn item_key(item: &Value) -> Option<String> {
    let item = item.as_object()?;
    let protocol = || {
        item.get("protocol")
            .cloned()
            .unwrap_or_else(|| json!("TCP"))
    };
    let key = if let Some(port) = item.get("containerPort") {
        json!({"containerPort": port, "protocol": protocol()})
    } else if let Some(path) = item.get("mountPath") {
        json!({"mountPath": path})
    } else if let Some(port) = item.get("port").filter(|p| p.is_number()) {
        json!({"port": port, "protocol": protocol()})
    } else if let Some(name) = item.get("name").filter(|n| n.is_string()) {
        json!({"name": name})
    } else {
        return None;
    };
    Some(key.to_string())
}

/// The keys of a list if every item has a distinct merge key; `None` for atomic lists.
fn list_keys(items: &[Value]) -> Option<Vec<String>> {
    if items.is_empty() {
        return None;
    }
    let keys: Vec<String> = items.iter().map(item_key).collect::<Option<_>>()?;
    let distinct: BTreeSet<&String> = keys.iter().collect();
    (distinct.len() == keys.len()).then_some(keys)
}

/// The leaf fields a manager owns by applying `config`: every scalar, empty map and atomic
/// list, minus identity fields the server never lists (`apiVersion`, `kind`, `metadata.name`,
/// `metadata.namespace`) and `status`.
pub fn owned_paths(config: &Value) -> BTreeSet<Path> {
    let mut out = BTreeSet::new();
    if let Some(map) = config.as_object() {
        for (key, child) in map {
            match key.as_str() {
                "apiVersion" | "kind" | "status" => {}
                "metadata" => {
                    for (mkey, mchild) in child.as_object().into_iter().flatten() {
                        if mkey != "name" && mkey != "namespace" {
                            let prefix =
                                vec![Seg::Field("metadata".into()), Seg::Field(mkey.clone())];
                            leaves(mchild, prefix, &mut out);
                        }
                    }
                }
                _ => leaves(child, vec![Seg::Field(key.clone())], &mut out),
            }
        }
    }
    out
}

fn leaves(value: &Value, prefix: Path, out: &mut BTreeSet<Path>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                let mut path = prefix.clone();
                path.push(Seg::Field(key.clone()));
                leaves(child, path, out);
            }
        }
        Value::Array(items) => match list_keys(items) {
            Some(keys) => {
                for (item, key) in items.iter().zip(keys) {
                    let mut path = prefix.clone();
                    path.push(Seg::Key(key));
                    leaves(item, path, out);
                }
            }
            None => {
                out.insert(prefix);
            }
        },
        _ => {
            out.insert(prefix);
        }
    }
}

/// Renders a set of paths as a FieldsV1 value (`{"f:spec":{"f:replicas":{}}}`).
pub fn fields_v1(paths: &BTreeSet<Path>) -> Value {
    let mut root = Map::new();
    for path in paths {
        let mut node = &mut root;
        for seg in path {
            let (name, keyed) = match seg {
                Seg::Field(f) => (format!("f:{f}"), false),
                Seg::Key(k) => (format!("k:{k}"), true),
            };
            let child = node.entry(name).or_insert_with(|| json!({}));
            let child = child.as_object_mut().expect("field set nodes are maps");
            if keyed {
                child.insert(".".into(), json!({}));
            }
            node = child;
        }
    }
    Value::Object(root)
}

/// The value at `path`, if present.
pub fn get<'a>(value: &'a Value, path: &[Seg]) -> Option<&'a Value> {
    path.iter().try_fold(value, |node, seg| match seg {
        Seg::Field(f) => node.get(f),
        Seg::Key(k) => node
            .as_array()?
            .iter()
            .find(|item| item_key(item).as_deref() == Some(k)),
    })
}

/// Removes the field at `path`; returns whether something was removed.
pub fn remove(value: &mut Value, path: &[Seg]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut node = value;
    for seg in parents {
        let next = match seg {
            Seg::Field(f) => node.get_mut(f),
            Seg::Key(k) => node.as_array_mut().and_then(|items| {
                items
                    .iter_mut()
                    .find(|item| item_key(item).as_deref() == Some(k))
            }),
        };
        let Some(next) = next else { return false };
        node = next;
    }
    match last {
        Seg::Field(f) => node.as_object_mut().and_then(|m| m.remove(f)).is_some(),
        Seg::Key(k) => match node.as_array_mut() {
            Some(items) => {
                let before = items.len();
                items.retain(|item| item_key(item).as_deref() != Some(k));
                items.len() != before
            }
            None => false,
        },
    }
}

/// Whether the map or list at `path` exists and is empty.
pub fn is_empty_container(value: &Value, path: &[Seg]) -> bool {
    match get(value, path) {
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        _ => false,
    }
}

/// Deep merge: maps merge recursively, everything else (lists included) is replaced.
pub fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(base), Value::Object(patch)) => {
            for (key, value) in patch {
                match base.get_mut(key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        base.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (base, patch) => *base = patch.clone(),
    }
}

/// Drops `null` members recursively (an apply config's `null` means "not specified" here).
pub fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// The leaf paths where two objects differ (keyed lists compared item by item).
pub fn diff(before: &Value, after: &Value) -> BTreeSet<Path> {
    let mut out = BTreeSet::new();
    diff_into(Some(before), Some(after), Vec::new(), &mut out);
    out
}

fn diff_into(a: Option<&Value>, b: Option<&Value>, prefix: Path, out: &mut BTreeSet<Path>) {
    match (a, b) {
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for key in keys {
                let mut path = prefix.clone();
                path.push(Seg::Field(key.clone()));
                diff_into(x.get(key), y.get(key), path, out);
            }
        }
        (Some(Value::Array(x)), Some(Value::Array(y))) if a != b => {
            match (list_keys(x), list_keys(y)) {
                (Some(kx), Some(ky)) => {
                    let keys: BTreeSet<&String> = kx.iter().chain(ky.iter()).collect();
                    for key in keys {
                        let item_a = kx.iter().position(|k| k == key).map(|i| &x[i]);
                        let item_b = ky.iter().position(|k| k == key).map(|i| &y[i]);
                        let mut path = prefix.clone();
                        path.push(Seg::Key(key.clone()));
                        diff_into(item_a, item_b, path, out);
                    }
                }
                _ => {
                    out.insert(prefix);
                }
            }
        }
        _ if a == b => {}
        _ => {
            out.insert(prefix);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str) -> Seg {
        Seg::Field(name.into())
    }

    #[test]
    fn owned_paths_and_fields_v1() {
        let config = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "prod", "labels": {"app": "web"}},
            "spec": {"replicas": 2, "template": {"spec": {
                "containers": [{"name": "nginx", "image": "nginx:1", "args": ["a", "b"]}],
                "volumes": [{"name": "tmp", "emptyDir": {}}]}}}
        });
        let paths = owned_paths(&config);
        assert!(paths.contains(&vec![f("metadata"), f("labels"), f("app")]));
        assert!(paths.contains(&vec![f("spec"), f("replicas")]));
        let nginx = Seg::Key(r#"{"name":"nginx"}"#.into());
        let image = vec![
            f("spec"),
            f("template"),
            f("spec"),
            f("containers"),
            nginx.clone(),
            f("image"),
        ];
        assert!(paths.contains(&image));
        assert_eq!(get(&config, &image), Some(&json!("nginx:1")));
        assert_eq!(
            display(&image),
            r#".spec.template.spec.containers[name="nginx"].image"#
        );
        let v1 = fields_v1(&paths);
        assert_eq!(v1["f:metadata"]["f:labels"]["f:app"], json!({}));
        let container =
            &v1["f:spec"]["f:template"]["f:spec"]["f:containers"][r#"k:{"name":"nginx"}"#];
        assert_eq!(container["."], json!({}));
        assert_eq!(container["f:args"], json!({}));
        assert!(v1["f:metadata"].get("f:name").is_none());
    }

    #[test]
    fn remove_and_diff() {
        let mut value =
            json!({"spec": {"a": 1, "list": [{"name": "x", "v": 1}, {"name": "y", "v": 2}]}});
        let before = value.clone();
        let y = vec![f("spec"), f("list"), Seg::Key(r#"{"name":"y"}"#.into())];
        assert!(remove(&mut value, &y));
        assert!(!remove(&mut value, &y));
        assert_eq!(diff(&before, &value), BTreeSet::from([y]));
        assert!(remove(&mut value, &[f("spec"), f("a")]));
        assert_eq!(value, json!({"spec": {"list": [{"name": "x", "v": 1}]}}));
    }

    #[test]
    fn merge_replaces_lists() {
        let mut base = json!({"a": {"b": 1, "c": [1, 2]}, "d": 1});
        merge(&mut base, &json!({"a": {"c": [3], "e": 2}}));
        assert_eq!(base, json!({"a": {"b": 1, "c": [3], "e": 2}, "d": 1}));
    }
}
