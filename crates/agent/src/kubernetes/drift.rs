//! Drift: where a live object no longer carries what its manifest sets.
//!
//! Pure: no IO. The comparison is *desired ⊆ live* (`docs/dev/kube-rs-notes.md` §9): every field
//! the manifest sets must be in the live object with the same value, while fields only the live
//! object has (API server defaults, other controllers' fields, `status`) are fine.
//!
//! - **Objects** are compared key by key over the desired keys, in sorted key order.
//! - **Lists whose elements are all objects with a string `name`** (containers, env, volumes,
//!   named ports...) are matched by name, so reordering is not drift and elements other
//!   controllers add (injected sidecars) are fine. A desired element missing from the live list
//!   is drift at its pointer. A name that occurs several times is matched by occurrence (the
//!   second desired `name: x` with the second live `name: x`, as for volumeMounts of one volume).
//! - **Other lists** (args, command, unnamed ports...) are compared element by element and must
//!   have the same length; a different length is one difference at the list's own pointer.
//! - **Scalars** are equal when they are the same JSON value, or when both are Kubernetes
//!   quantities (a JSON number, or a string such as `"500m"`, `"1Gi"`, `"1e3"`) of the same
//!   amount within a relative tolerance of 1e-9: `"1000m"` = `"1"` = `1`, `"0.5"` = `"500m"`,
//!   `"1Gi"` = `"1073741824"`. Otherwise a number and a string differ (`true` ≠ `"true"`,
//!   `80` ≠ `"http"`). Quantity normalization is not applied under `/metadata`: labels and
//!   annotations are text (`version: "1.0"` ≠ `"1"`). Outside `/metadata` it applies to any
//!   numeric text, so changing an env value from `"1.0"` to `"1"` is not seen as drift.
//! - **Zero values**: the API server drops `false`, `0`, empty lists and empty objects from
//!   many fields (Go `omitempty`), so a desired zero value (an object of zero values included)
//!   matches an absent live field, except under `/metadata`. A desired `null` sets nothing.
//! - **Skipped**: the top-level `status`; the server-owned `metadata` fields
//!   (`resourceVersion`, `uid`, `generation`, `managedFields`, `creationTimestamp`, `selfLink`,
//!   `deletionTimestamp`) and the `kubectl.kubernetes.io/last-applied-configuration` annotation.
//!
//! Differences are JSON pointers (RFC 6901: `~` is written `~0` and `/` is written `~1`, so the
//! label `app.kubernetes.io/name` is `/metadata/labels/app.kubernetes.io~1name`). **List indices in
//! pointers are indices in the desired manifest**, also for lists matched by name: a pointer
//! names the field of the bundle's manifest that is not honoured, and ignore rules (which
//! [`strip`] applies to the manifest) use the same indices.
//!
//! Ignore paths are JSON pointers in which a `*` segment matches any one segment. A path is
//! ignored when an ignore pointer matches it or one of its prefixes; `""` ignores everything, and
//! a pointer that RFC 6901 rejects (no leading `/`, or a `~` not followed by `0` or `1`) matches
//! nothing. Pointers are parsed and written by the `jsonptr` crate.

use flotilla_api::{DriftIgnore, DriftPolicy};
use jsonptr::{Pointer, PointerBuf, Token, index::Index};
use serde_json::Value;

/// `metadata` fields the API server owns.
const SERVER_METADATA: [&str; 7] = [
    "resourceVersion",
    "uid",
    "generation",
    "managedFields",
    "creationTimestamp",
    "selfLink",
    "deletionTimestamp",
];

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The ignore paths of every rule of `policy` that selects `object`, in rule order, without
/// repeats. A rule selects an object when each of its `apiVersion`, `kind` and `name` that is set
/// equals the object's (`metadata.name`); a rule with none set selects every object.
pub fn ignored_paths<'a>(policy: &'a DriftPolicy, object: &Value) -> Vec<&'a str> {
    let mut paths: Vec<&'a str> = Vec::new();
    for rule in policy.ignore.iter().filter(|rule| selects(rule, object)) {
        for path in &rule.paths {
            if !paths.contains(&path.as_str()) {
                paths.push(path);
            }
        }
    }
    paths
}

fn selects(rule: &DriftIgnore, object: &Value) -> bool {
    let matches = |want: &Option<String>, pointer: &str| {
        want.as_deref()
            .is_none_or(|want| object.pointer(pointer).and_then(Value::as_str) == Some(want))
    };
    matches(&rule.api_version, "/apiVersion")
        && matches(&rule.kind, "/kind")
        && matches(&rule.name, "/metadata/name")
}

/// The JSON pointers where `live` does not carry what `desired` sets (see the module docs), in a
/// deterministic order: a depth-first walk of `desired` with object keys sorted and list elements
/// in desired order. Paths matched by `ignore` are not compared.
pub fn diff(desired: &Value, live: &Value, ignore: &[&str]) -> Vec<String> {
    let mut walk = Walk {
        ignore: ignore.iter().filter_map(|p| parse_pointer(p)).collect(),
        path: Vec::new(),
        found: Vec::new(),
    };
    walk.compare(desired, Some(live));
    walk.found
}

/// Removes the fields `ignore` points at from `manifest`, so that server-side apply releases
/// them to whoever else manages them. `*` segments match every key of an object or every element
/// of a list; a path that does not exist is skipped; removing list elements removes them from
/// the list (higher indices first, so each pointer means the element of the original manifest).
/// The object's identity (`apiVersion`, `kind`, `metadata.name`, `metadata.namespace`) is always
/// kept, since apply needs it; `""` (the whole object) removes nothing.
pub fn strip(manifest: &mut Value, ignore: &[&str]) {
    let identity: Vec<(&Pointer, Value)> = [
        "/apiVersion",
        "/kind",
        "/metadata/name",
        "/metadata/namespace",
    ]
    .into_iter()
    .map(Pointer::from_static)
    .filter_map(|p| p.resolve(manifest).ok().map(|v| (p, v.clone())))
    .collect();

    let mut targets: Vec<Vec<Step>> = Vec::new();
    for pattern in ignore.iter().filter_map(|p| parse_pointer(p)) {
        if !pattern.is_empty() {
            expand(manifest, &pattern, &mut Vec::new(), &mut targets);
        }
    }
    targets.sort();
    targets.dedup();
    // Reverse order: children before their parents and higher list indices before lower ones,
    // so every removal still finds the element the pointer meant.
    for target in targets.iter().rev() {
        let tokens = target.iter().map(|step| match step {
            Step::Key(key) => Token::new(key.as_str()),
            Step::Index(index) => Token::from(*index),
        });
        PointerBuf::from_tokens(tokens).delete(manifest);
    }

    // Put the identity back, creating `metadata` if an ignore path removed it. Assigning a key
    // into an object cannot fail, and the manifest root is an object.
    for (pointer, value) in identity {
        let _replaced = pointer.assign(manifest, value);
    }
}

/// One step into a value: a key of an object or an index of a list.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Key(String),
    Index(usize),
}

/// The concrete paths in `value` that `pattern` (unescaped segments, `*` for any) matches.
fn expand(value: &Value, pattern: &[String], at: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    let Some((segment, rest)) = pattern.split_first() else {
        out.push(at.clone());
        return;
    };
    let mut visit = |step: Step, child: &Value, at: &mut Vec<Step>| {
        at.push(step);
        expand(child, rest, at, out);
        at.pop();
    };
    match value {
        Value::Object(map) if segment == "*" => {
            for (key, child) in map {
                visit(Step::Key(key.clone()), child, at);
            }
        }
        Value::Object(map) => {
            if let Some(child) = map.get(segment) {
                visit(Step::Key(segment.clone()), child, at);
            }
        }
        Value::Array(items) if segment == "*" => {
            for (index, child) in items.iter().enumerate() {
                visit(Step::Index(index), child, at);
            }
        }
        Value::Array(items) => {
            if let Some(index) = parse_index(segment)
                && let Some(child) = items.get(index)
            {
                visit(Step::Index(index), child, at);
            }
        }
        _ => {}
    }
}

/// An RFC 6901 array index: `0` or digits without a leading zero (`-`, the index past the end,
/// names no element).
fn parse_index(segment: &str) -> Option<usize> {
    match Token::new(segment).to_index() {
        Ok(Index::Num(index)) => Some(index),
        Ok(Index::Next) | Err(_) => None,
    }
}

/// Unescaped segments of an RFC 6901 pointer; `None` when it is not one (no leading `/`, or a
/// `~` not followed by `0` or `1`).
fn parse_pointer(pointer: &str) -> Option<Vec<String>> {
    let pointer = Pointer::parse(pointer).ok()?;
    Some(
        pointer
            .tokens()
            .map(|token| token.decoded().into_owned())
            .collect(),
    )
}

struct Walk {
    /// Parsed ignore pointers.
    ignore: Vec<Vec<String>>,
    /// Unescaped segments from the root to the value being compared.
    path: Vec<String>,
    found: Vec<String>,
}

impl Walk {
    fn ignored(&self) -> bool {
        self.ignore.iter().any(|pattern| {
            pattern.len() <= self.path.len()
                && pattern
                    .iter()
                    .zip(&self.path)
                    .all(|(want, segment)| want == "*" || want == segment)
        })
    }

    /// Under `/metadata`: text compared exactly, no zero-value leniency.
    fn in_metadata(&self) -> bool {
        self.path.first().is_some_and(|s| s == "metadata")
    }

    /// Whether the key `key` of the object at the current path is never compared.
    fn skipped(&self, key: &str) -> bool {
        match self.path.as_slice() {
            // `stringData` is write-only: a Secret comes back with `data` alone.
            [] => key == "status" || key == "stringData",
            [metadata] if metadata == "metadata" => SERVER_METADATA.contains(&key),
            [metadata, annotations] if metadata == "metadata" && annotations == "annotations" => {
                key == LAST_APPLIED
            }
            _ => false,
        }
    }

    fn report(&mut self) {
        let tokens = self.path.iter().map(|segment| Token::new(segment.as_str()));
        self.found.push(PointerBuf::from_tokens(tokens).to_string());
    }

    fn compare(&mut self, desired: &Value, live: Option<&Value>) {
        if desired.is_null() || self.ignored() {
            return;
        }
        let Some(live) = live.filter(|l| !l.is_null()) else {
            if self.in_metadata() || !is_zero(desired) {
                self.report();
            }
            return;
        };
        match (desired, live) {
            (Value::Object(desired), Value::Object(live)) => {
                let mut keys: Vec<&String> = desired.keys().collect();
                keys.sort();
                for key in keys {
                    if self.skipped(key) {
                        continue;
                    }
                    self.path.push(key.clone());
                    self.compare(&desired[key], live.get(key));
                    self.path.pop();
                }
            }
            (Value::Array(desired), Value::Array(live)) if is_named_list(desired) => {
                for (index, element) in desired.iter().enumerate() {
                    let counterpart = named_counterpart(desired, index, live);
                    self.path.push(index.to_string());
                    self.compare(element, counterpart);
                    self.path.pop();
                }
            }
            (Value::Array(desired), Value::Array(live)) => {
                if desired.len() != live.len() {
                    self.report();
                    return;
                }
                for (index, (d, l)) in desired.iter().zip(live).enumerate() {
                    self.path.push(index.to_string());
                    self.compare(d, Some(l));
                    self.path.pop();
                }
            }
            (Value::Object(_) | Value::Array(_), _) | (_, Value::Object(_) | Value::Array(_)) => {
                self.report();
            }
            (desired, live) => {
                if !scalars_equal(desired, live, self.in_metadata()) {
                    self.report();
                }
            }
        }
    }
}

/// `false`, `0`, `[]`, or an object of zero values: what Go `omitempty` leaves out.
fn is_zero(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        // Go's omitempty drops "" as well (e.g. an env var's `value: ""`).
        Value::String(text) => text.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.values().all(is_zero),
    }
}

fn name_of(value: &Value) -> Option<&str> {
    value.get("name").and_then(Value::as_str)
}

/// A non-empty list of objects that all have a string `name`.
fn is_named_list(items: &[Value]) -> bool {
    !items.is_empty() && items.iter().all(|item| name_of(item).is_some())
}

/// The live element for `desired[index]`: the live element with the same name and the same
/// occurrence of that name.
fn named_counterpart<'l>(desired: &[Value], index: usize, live: &'l [Value]) -> Option<&'l Value> {
    let name = name_of(&desired[index]);
    let occurrence = desired[..index]
        .iter()
        .filter(|d| name_of(d) == name)
        .count();
    live.iter().filter(|l| name_of(l) == name).nth(occurrence)
}

fn scalars_equal(desired: &Value, live: &Value, exact: bool) -> bool {
    if desired == live {
        return true;
    }
    if exact {
        return false;
    }
    match (quantity(desired), quantity(live)) {
        (Some(a), Some(b)) => a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()),
        _ => false,
    }
}

/// The amount of a JSON number or a Kubernetes quantity string.
fn quantity(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => parse_quantity(s),
        _ => None,
    }
}

/// A Kubernetes quantity: `[+-]` decimal number (digits with at most one `.`), then nothing, a
/// decimal SI suffix (`n u m k M G T P E`), a binary suffix (`Ki Mi Gi Ti Pi Ei`) or a decimal
/// exponent (`e3`, `E-2`).
pub fn parse_quantity(text: &str) -> Option<f64> {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let number_len = unsigned
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(unsigned.len());
    let number = &unsigned[..number_len];
    if !number.bytes().any(|b| b.is_ascii_digit()) || number.matches('.').count() > 1 {
        return None;
    }
    let suffix = &unsigned[number_len..];
    let multiplier = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => {
            let exponent = suffix.strip_prefix(['e', 'E'])?;
            let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            10f64.powi(exponent.parse::<i32>().ok()?)
        }
    };
    let sign = if text.starts_with('-') { -1.0 } else { 1.0 };
    let amount = sign * number.parse::<f64>().ok()? * multiplier;
    amount.is_finite().then_some(amount)
}

#[cfg(test)]
mod tests {
    use flotilla_api::DriftMode;
    use serde_json::json;

    use super::*;

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "web",
                "namespace": "shop",
                "labels": {"app": "web", "app.kubernetes.io/name": "web"},
            },
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "app",
                                "image": "nginx:1.27",
                                "ports": [{"containerPort": 80}],
                                "resources": {"limits": {"cpu": "1000m", "memory": "1Gi"}},
                                "env": [{"name": "MODE", "value": "prod"}],
                            },
                            {"name": "sidecar", "image": "envoy:1.30", "args": ["--v", "2"]},
                        ],
                    },
                },
            },
        })
    }

    /// `deployment()` as the API server returns it: defaults, server metadata, status,
    /// normalized quantities.
    fn live() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "web",
                "namespace": "shop",
                "uid": "0b5c",
                "resourceVersion": "4711",
                "generation": 2,
                "creationTimestamp": "2024-01-01T00:00:00Z",
                "managedFields": [{"manager": "flotilla", "operation": "Apply"}],
                "labels": {"app": "web", "app.kubernetes.io/name": "web"},
                "annotations": {"deployment.kubernetes.io/revision": "2"},
            },
            "spec": {
                "replicas": 3,
                "revisionHistoryLimit": 10,
                "progressDeadlineSeconds": 600,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate",
                             "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                "template": {
                    "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "app",
                                "image": "nginx:1.27",
                                "imagePullPolicy": "IfNotPresent",
                                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                                "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
                                "env": [{"name": "MODE", "value": "prod"}],
                                "terminationMessagePath": "/dev/termination-log",
                            },
                            {"name": "sidecar", "image": "envoy:1.30", "args": ["--v", "2"],
                             "imagePullPolicy": "IfNotPresent"},
                        ],
                        "restartPolicy": "Always",
                        "dnsPolicy": "ClusterFirst",
                    },
                },
            },
            "status": {"replicas": 3, "readyReplicas": 3, "observedGeneration": 2},
        })
    }

    fn set(value: &mut Value, pointer: &str, new: Value) {
        *value
            .pointer_mut(pointer)
            .unwrap_or_else(|| panic!("{pointer}")) = new;
    }

    fn policy(rules: Value) -> DriftPolicy {
        serde_json::from_value(json!({"ignore": rules})).unwrap()
    }

    // --- diff ---

    #[test]
    fn equal_objects_have_no_drift() {
        assert_eq!(
            diff(&deployment(), &deployment(), &[]),
            Vec::<String>::new()
        );
    }

    #[test]
    fn live_defaults_and_extra_fields_are_no_drift() {
        assert_eq!(diff(&deployment(), &live(), &[]), Vec::<String>::new());
    }

    #[test]
    fn changed_scalar_is_reported_at_its_pointer() {
        let mut live = live();
        set(&mut live, "/spec/replicas", json!(5));
        assert_eq!(diff(&deployment(), &live, &[]), ["/spec/replicas"]);
    }

    #[test]
    fn missing_live_field_is_drift() {
        let mut live = live();
        live["spec"].as_object_mut().unwrap().remove("selector");
        assert_eq!(diff(&deployment(), &live, &[]), ["/spec/selector"]);
    }

    #[test]
    fn container_image_change_uses_the_desired_index() {
        let mut live = live();
        set(
            &mut live,
            "/spec/template/spec/containers/1/image",
            json!("envoy:1.31"),
        );
        assert_eq!(
            diff(&deployment(), &live, &[]),
            ["/spec/template/spec/containers/1/image"]
        );
        // Reordered live containers: the pointer still names the manifest's container.
        let mut live = live.clone();
        live["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .reverse();
        assert_eq!(
            diff(&deployment(), &live, &[]),
            ["/spec/template/spec/containers/1/image"]
        );
    }

    #[test]
    fn reordered_containers_are_no_drift() {
        let mut live = live();
        live["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .reverse();
        assert_eq!(diff(&deployment(), &live, &[]), Vec::<String>::new());
    }

    #[test]
    fn injected_containers_are_no_drift_but_removed_ones_are() {
        let mut live = live();
        let containers = live["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap();
        containers.push(json!({"name": "istio-proxy", "image": "istio/proxyv2"}));
        assert_eq!(diff(&deployment(), &live, &[]), Vec::<String>::new());
        live["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .remove(0);
        assert_eq!(
            diff(&deployment(), &live, &[]),
            ["/spec/template/spec/containers/0"]
        );
    }

    #[test]
    fn duplicate_names_match_by_occurrence() {
        let desired = json!({"spec": {"volumeMounts": [
            {"name": "data", "mountPath": "/a"},
            {"name": "data", "mountPath": "/b"},
        ]}});
        let live = json!({"spec": {"volumeMounts": [
            {"name": "data", "mountPath": "/a"},
            {"name": "data", "mountPath": "/c"},
        ]}});
        assert_eq!(
            diff(&desired, &live, &[]),
            ["/spec/volumeMounts/1/mountPath"]
        );
    }

    #[test]
    fn unnamed_list_length_change_is_drift_at_the_list() {
        let mut live = live();
        set(
            &mut live,
            "/spec/template/spec/containers/1/args",
            json!(["--v", "2", "--debug"]),
        );
        assert_eq!(
            diff(&deployment(), &live, &[]),
            ["/spec/template/spec/containers/1/args"]
        );
        set(
            &mut live,
            "/spec/template/spec/containers/1/args",
            json!(["--v"]),
        );
        assert_eq!(
            diff(&deployment(), &live, &[]),
            ["/spec/template/spec/containers/1/args"]
        );
    }

    #[test]
    fn unnamed_list_compares_element_wise() {
        let mut live = live();
        set(
            &mut live,
            "/spec/template/spec/containers/1/args",
            json!(["--v", "3"]),
        );
        assert_eq!(
            diff(&deployment(), &live, &[]),
            ["/spec/template/spec/containers/1/args/1"]
        );
        // Objects inside unnamed lists are compared as subsets too (protocol is a default).
        let mut live = self::live();
        set(
            &mut live,
            "/spec/template/spec/containers/0/ports/0/containerPort",
            json!(8080),
        );
        assert_eq!(
            diff(&deployment(), &live, &[]),
            ["/spec/template/spec/containers/0/ports/0/containerPort"]
        );
    }

    #[test]
    fn named_env_entry_changed_and_removed() {
        let mut live = live();
        set(
            &mut live,
            "/spec/template/spec/containers/0/env",
            json!([{"name": "OTHER", "value": "x"}, {"name": "MODE", "value": "dev"}]),
        );
        assert_eq!(
            diff(&deployment(), &live, &[]),
            ["/spec/template/spec/containers/0/env/0/value"]
        );
        set(&mut live, "/spec/template/spec/containers/0/env", json!([]));
        assert_eq!(
            diff(&deployment(), &live, &[]),
            ["/spec/template/spec/containers/0/env/0"]
        );
    }

    #[test]
    fn quantities_are_normalized() {
        let pairs = [
            (json!("1000m"), json!("1")),
            (json!(1), json!("1")),
            (json!("1000m"), json!(1)),
            (json!("0.5"), json!("500m")),
            (json!("1Gi"), json!("1073741824")),
            (json!("1024Mi"), json!("1Gi")),
            (json!("1e3"), json!("1k")),
            (json!("1E3"), json!("1000")),
            (json!("1.5G"), json!("1500M")),
            (json!(0.1), json!("100m")),
            (json!("100u"), json!("0.0001")),
            (json!(2), json!(2.0)),
        ];
        for (desired, live) in pairs {
            let d = json!({"spec": {"cpu": desired}});
            let l = json!({"spec": {"cpu": live}});
            assert_eq!(diff(&d, &l, &[]), Vec::<String>::new(), "{d} vs {l}");
        }
        let d = json!({"spec": {"cpu": "500m"}});
        let l = json!({"spec": {"cpu": "1"}});
        assert_eq!(diff(&d, &l, &[]), ["/spec/cpu"]);
        let d = json!({"spec": {"memory": "1Gi"}});
        let l = json!({"spec": {"memory": "1G"}});
        assert_eq!(diff(&d, &l, &[]), ["/spec/memory"]);
    }

    #[test]
    fn parse_quantity_grammar() {
        assert_eq!(parse_quantity("1"), Some(1.0));
        assert_eq!(parse_quantity("-2k"), Some(-2000.0));
        assert_eq!(parse_quantity("+.5"), Some(0.5));
        assert_eq!(parse_quantity("1Ki"), Some(1024.0));
        assert_eq!(parse_quantity("2Ei"), Some(2.0 * 2f64.powi(60)));
        assert_eq!(parse_quantity("1E"), Some(1e18));
        assert_eq!(parse_quantity("1e-3"), Some(1e-3));
        for bad in [
            "", "m", "e3", ".", "1.2.3", "1e", "1e3k", "1KB", "0x10", "1 Gi", "25%", "http",
            "1e999", "NaN", "inf",
        ] {
            assert_eq!(parse_quantity(bad), None, "{bad}");
        }
    }

    #[test]
    fn number_and_string_differ_unless_both_are_quantities() {
        let cases = [
            (json!(true), json!("true"), false),
            (json!(80), json!("http"), false),
            (json!(80), json!("0x50"), false),
            (json!("25%"), json!(25), false),
            (json!(false), json!(0), false),
            (json!(80), json!("80"), true),
        ];
        for (desired, live, equal) in cases {
            let d = json!({"spec": {"port": desired}});
            let l = json!({"spec": {"port": live}});
            assert_eq!(diff(&d, &l, &[]).is_empty(), equal, "{d} vs {l}");
        }
    }

    #[test]
    fn metadata_is_compared_as_text() {
        let d = json!({"metadata": {"labels": {"version": "1.0"}}});
        let l = json!({"metadata": {"labels": {"version": "1"}}});
        assert_eq!(diff(&d, &l, &[]), ["/metadata/labels/version"]);
    }

    #[test]
    fn zero_values_match_absent_live_fields() {
        let d = json!({"spec": {"paused": false, "minReadySeconds": 0, "tolerations": [],
                                "securityContext": {}, "strategy": {"rollingUpdate": {}},
                                "nothing": null}});
        let l = json!({"spec": {}});
        assert_eq!(diff(&d, &l, &[]), Vec::<String>::new());
        // A zero value against a different live value is still drift.
        let l =
            json!({"spec": {"paused": true, "minReadySeconds": 5, "tolerations": [{"key": "a"}]}});
        assert_eq!(
            diff(&d, &l, &[]),
            ["/spec/minReadySeconds", "/spec/paused", "/spec/tolerations"]
        );
        // Empty strings are zero too (omitempty drops them); metadata is not zero-lenient.
        let d = json!({"metadata": {"labels": {}}, "spec": {"subPath": ""}});
        assert_eq!(diff(&d, &json!({}), &[]), ["/metadata"]);
        // Secrets come back without stringData.
        let d = json!({"kind": "Secret", "stringData": {"password": "x"}});
        assert_eq!(
            diff(
                &d,
                &json!({"kind": "Secret", "data": {"password": "eA=="}}),
                &[]
            ),
            Vec::<String>::new()
        );
    }

    #[test]
    fn type_mismatch_is_drift() {
        let d = json!({"spec": {"a": {"b": 1}, "c": [1], "e": "x"}});
        let l = json!({"spec": {"a": "b", "c": {"0": 1}, "e": {"x": 1}}});
        assert_eq!(diff(&d, &l, &[]), ["/spec/a", "/spec/c", "/spec/e"]);
        assert_eq!(diff(&d, &json!("text"), &[]), [""]);
    }

    #[test]
    fn ignore_exact_path() {
        let mut live = live();
        set(&mut live, "/spec/replicas", json!(7));
        assert_eq!(
            diff(&deployment(), &live, &["/spec/replicas"]),
            Vec::<String>::new()
        );
        assert_eq!(
            diff(&deployment(), &live, &["/spec/replica"]),
            ["/spec/replicas"]
        );
    }

    #[test]
    fn ignore_prefix_covers_the_subtree() {
        let mut live = live();
        set(&mut live, "/spec/replicas", json!(7));
        set(
            &mut live,
            "/spec/template/spec/containers/0/image",
            json!("nginx:1.28"),
        );
        set(
            &mut live,
            "/spec/template/spec/containers/1/image",
            json!("envoy:2"),
        );
        assert_eq!(
            diff(&deployment(), &live, &["/spec/template"]),
            ["/spec/replicas"]
        );
        assert_eq!(diff(&deployment(), &live, &["/spec"]), Vec::<String>::new());
        assert_eq!(diff(&deployment(), &live, &[""]), Vec::<String>::new());
    }

    #[test]
    fn ignore_wildcard_matches_one_segment() {
        let mut live = live();
        set(
            &mut live,
            "/spec/template/spec/containers/0/image",
            json!("nginx:1.28"),
        );
        set(
            &mut live,
            "/spec/template/spec/containers/1/image",
            json!("envoy:2"),
        );
        set(
            &mut live,
            "/spec/template/spec/containers/1/args",
            json!(["-q"]),
        );
        assert_eq!(
            diff(
                &deployment(),
                &live,
                &["/spec/template/spec/containers/*/image"]
            ),
            ["/spec/template/spec/containers/1/args"]
        );
        // `*` is one segment, not a subtree.
        assert_eq!(diff(&deployment(), &live, &["/spec/*/image"]).len(), 3);
        assert_eq!(
            diff(&deployment(), &live, &["/spec/*/spec"]),
            Vec::<String>::new()
        );
    }

    #[test]
    fn invalid_ignore_pointer_matches_nothing() {
        let mut live = live();
        set(&mut live, "/spec/replicas", json!(7));
        assert_eq!(
            diff(&deployment(), &live, &["spec/replicas"]),
            ["/spec/replicas"]
        );
    }

    #[test]
    fn status_is_ignored() {
        let mut desired = deployment();
        desired["status"] = json!({"replicas": 99, "conditions": []});
        assert_eq!(diff(&desired, &live(), &[]), Vec::<String>::new());
        // Only the top-level status: a spec field named status is compared.
        let d = json!({"spec": {"status": "on"}});
        let l = json!({"spec": {"status": "off"}});
        assert_eq!(diff(&d, &l, &[]), ["/spec/status"]);
    }

    #[test]
    fn server_metadata_is_ignored() {
        let mut desired = deployment();
        desired["metadata"]["resourceVersion"] = json!("1");
        desired["metadata"]["uid"] = json!("other");
        desired["metadata"]["generation"] = json!(1);
        desired["metadata"]["managedFields"] = json!([]);
        desired["metadata"]["creationTimestamp"] = json!("2020-01-01T00:00:00Z");
        desired["metadata"]["selfLink"] = json!("/apis/apps/v1/x");
        desired["metadata"]["deletionTimestamp"] = json!("2020-01-01T00:00:00Z");
        desired["metadata"]["annotations"] = json!({
            "kubectl.kubernetes.io/last-applied-configuration": "{\"old\":true}",
        });
        assert_eq!(diff(&desired, &live(), &[]), Vec::<String>::new());
        desired["metadata"]["annotations"]["team"] = json!("shop");
        assert_eq!(diff(&desired, &live(), &[]), ["/metadata/annotations/team"]);
    }

    #[test]
    fn label_removed_from_live_is_drift() {
        let mut live = live();
        live["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .remove("app");
        assert_eq!(diff(&deployment(), &live, &[]), ["/metadata/labels/app"]);
    }

    #[test]
    fn pointer_escapes_slash_and_tilde() {
        let mut live = live();
        live["metadata"]["labels"]["app.kubernetes.io/name"] = json!("other");
        assert_eq!(
            diff(&deployment(), &live, &[]),
            ["/metadata/labels/app.kubernetes.io~1name"]
        );
        assert_eq!(
            diff(
                &deployment(),
                &live,
                &["/metadata/labels/app.kubernetes.io~1name"]
            ),
            Vec::<String>::new()
        );
        let d = json!({"data": {"a~b/c": "1", "~1": "x"}});
        let l = json!({"data": {"a~b/c": "2", "~1": "y"}});
        assert_eq!(diff(&d, &l, &[]), ["/data/a~0b~1c", "/data/~01"]);
        assert_eq!(
            diff(&d, &l, &["/data/a~0b~1c", "/data/~01"]),
            Vec::<String>::new()
        );
        assert_eq!(
            parse_pointer("/a~1~0b/~01"),
            Some(vec!["a/~b".into(), "~1".into()])
        );
        // RFC 6901: `~` must be followed by `0` or `1`, and a pointer starts with `/`.
        assert_eq!(parse_pointer("/a~2"), None);
        assert_eq!(parse_pointer("a"), None);
        assert_eq!(diff(&d, &l, &["/data/a~2b", "data"]).len(), 2);
    }

    #[test]
    fn all_differences_in_deterministic_order() {
        let mut live = live();
        set(&mut live, "/spec/replicas", json!(1));
        set(&mut live, "/metadata/labels/app", json!("x"));
        set(
            &mut live,
            "/spec/template/spec/containers/1/image",
            json!("y"),
        );
        set(
            &mut live,
            "/spec/template/spec/containers/0/image",
            json!("z"),
        );
        let expected = [
            "/metadata/labels/app",
            "/spec/replicas",
            "/spec/template/spec/containers/0/image",
            "/spec/template/spec/containers/1/image",
        ];
        assert_eq!(diff(&deployment(), &live, &[]), expected);
        assert_eq!(diff(&deployment(), &live, &[]), expected);
    }

    // --- ignored_paths ---

    #[test]
    fn ignored_paths_select_by_api_version_kind_and_name() {
        let policy = policy(json!([
            {"paths": ["/metadata/annotations"]},
            {"kind": "Deployment", "paths": ["/spec/replicas"]},
            {"kind": "Deployment", "name": "api", "paths": ["/spec/template"]},
            {"apiVersion": "apps/v1", "kind": "StatefulSet", "paths": ["/spec/volumeClaimTemplates"]},
            {"apiVersion": "apps/v1", "paths": ["/spec/revisionHistoryLimit", "/spec/replicas"]},
            {"apiVersion": "autoscaling/v2", "paths": ["/spec/minReplicas"]},
            {"name": "web", "paths": ["/data"]},
        ]));
        assert_eq!(policy.mode, DriftMode::Correct);
        let web = deployment();
        assert_eq!(
            ignored_paths(&policy, &web),
            [
                "/metadata/annotations",
                "/spec/replicas",
                "/spec/revisionHistoryLimit",
                "/data"
            ]
        );
        let mut api = deployment();
        api["metadata"]["name"] = json!("api");
        assert_eq!(
            ignored_paths(&policy, &api),
            [
                "/metadata/annotations",
                "/spec/replicas",
                "/spec/template",
                "/spec/revisionHistoryLimit"
            ]
        );
        let sts =
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"}});
        assert_eq!(
            ignored_paths(&policy, &sts),
            [
                "/metadata/annotations",
                "/spec/volumeClaimTemplates",
                "/spec/revisionHistoryLimit",
                "/spec/replicas"
            ]
        );
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web"}});
        assert_eq!(
            ignored_paths(&policy, &cm),
            ["/metadata/annotations", "/data"]
        );
    }

    #[test]
    fn ignored_paths_of_empty_policy_is_empty() {
        assert!(ignored_paths(&DriftPolicy::default(), &deployment()).is_empty());
    }

    // --- strip ---

    #[test]
    fn strip_exact_paths() {
        let mut manifest = deployment();
        strip(
            &mut manifest,
            &[
                "/spec/replicas",
                "/metadata/labels/app.kubernetes.io~1name",
                "/spec/missing/x",
            ],
        );
        assert_eq!(manifest.pointer("/spec/replicas"), None);
        assert_eq!(manifest["metadata"]["labels"], json!({"app": "web"}));
        let mut expected = deployment();
        expected["spec"].as_object_mut().unwrap().remove("replicas");
        expected["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .remove("app.kubernetes.io/name");
        assert_eq!(manifest, expected);
    }

    #[test]
    fn strip_missing_path_is_a_no_op() {
        let mut manifest = deployment();
        strip(
            &mut manifest,
            &[
                "/spec/nothing",
                "/spec/replicas/deeper",
                "/spec/template/spec/containers/9",
                "/spec/template/spec/containers/01",
                "not-a-pointer",
                "",
            ],
        );
        assert_eq!(manifest, deployment());
    }

    #[test]
    fn strip_with_wildcard() {
        let mut manifest = deployment();
        strip(&mut manifest, &["/spec/template/spec/containers/*/image"]);
        let containers = manifest["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap();
        assert_eq!(containers.len(), 2);
        assert!(containers.iter().all(|c| c.get("image").is_none()));
        assert_eq!(containers[1]["args"], json!(["--v", "2"]));
    }

    #[test]
    fn strip_list_elements_by_original_index() {
        let mut manifest = json!({"spec": {"args": ["a", "b", "c", "d"]}});
        strip(&mut manifest, &["/spec/args/1", "/spec/args/2"]);
        assert_eq!(manifest, json!({"spec": {"args": ["a", "d"]}}));
        let mut manifest = json!({"spec": {"args": ["a", "b"], "env": {"x": 1}}});
        strip(&mut manifest, &["/spec/args/*", "/spec/env/*"]);
        assert_eq!(manifest, json!({"spec": {"args": [], "env": {}}}));
    }

    #[test]
    fn strip_keeps_the_identity() {
        let mut manifest = deployment();
        strip(&mut manifest, &["/metadata", "/kind", "/apiVersion"]);
        assert_eq!(
            manifest,
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "shop"},
                "spec": deployment()["spec"],
            })
        );
    }

    #[test]
    fn strip_then_diff_agree_on_paths() {
        // What strip releases is what diff no longer compares.
        let ignore = [
            "/spec/replicas",
            "/spec/template/spec/containers/*/resources",
        ];
        let mut manifest = deployment();
        strip(&mut manifest, &ignore);
        let mut live = live();
        set(&mut live, "/spec/replicas", json!(9));
        set(
            &mut live,
            "/spec/template/spec/containers/0/resources",
            json!({"limits": {"cpu": "4"}}),
        );
        assert_eq!(diff(&deployment(), &live, &ignore), Vec::<String>::new());
        assert_eq!(diff(&manifest, &live, &[]), Vec::<String>::new());
    }
}
