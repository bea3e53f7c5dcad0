//! Proptest strategies for what clients send: JSON documents shaped like manifests and
//! resources, and text shaped like label selectors. Shared by the parsers' generated-input tests
//! (`crates/core/tests/generated_inputs.rs`, `crates/server/tests/generated_inputs.rs`).

use proptest::prelude::*;
use serde_json::{Value, json};

/// Any JSON value, a few levels deep, with keys and strings that hit the shapes flotilla's
/// documents use (manifest fields, placeholders, resource fields).
pub fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("apiVersion".to_string()),
        Just("kind".to_string()),
        Just("metadata".to_string()),
        Just("name".to_string()),
        Just("namespace".to_string()),
        Just("labels".to_string()),
        Just("spec".to_string()),
        Just("targets".to_string()),
        Just("resources".to_string()),
        Just("bundles".to_string()),
        Just("facts".to_string()),
        "[a-zA-Z${}.]{0,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        "(v1|apps/v1|ConfigMap|Bundle|10000000000y|\\$\\{cluster\\.name\\}|\\$\\{values\\.[a-z]{0,3}\\}|\\$\\$\\{x\\}|\\$\\{|.{0,12})"
            .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// `document` with the value at one of its paths (chosen by `choice`) replaced by `value`: a
/// valid document with one part wrong, which reaches deeper into validation than noise does.
pub fn mutate(document: &Value, choice: usize, value: Value) -> Value {
    let mut paths = Vec::new();
    collect_paths(document, &mut Vec::new(), &mut paths);
    let mut out = document.clone();
    if paths.is_empty() {
        return value;
    }
    let path = &paths[choice % paths.len()];
    let mut at = &mut out;
    for step in path {
        at = match at {
            Value::Object(map) => map.get_mut(step.as_str()).expect("collected path"),
            Value::Array(items) => &mut items[step.parse::<usize>().expect("collected index")],
            _ => unreachable!("collected paths lead through objects and arrays"),
        };
    }
    *at = value;
    out
}

fn collect_paths(value: &Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(at.clone());
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                at.push(key.clone());
                collect_paths(child, at, out);
                at.pop();
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                at.push(index.to_string());
                collect_paths(child, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

/// Text shaped like the string form of a label selector, its operators and punctuation mixed
/// with anything.
pub fn selector_text() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        "[a-z0-9]{1,5}",
        "[a-z]{1,3}\\.[a-z]{1,3}/[a-z]{1,4}",
        Just("=".to_string()),
        Just("==".to_string()),
        Just("!=".to_string()),
        Just("!".to_string()),
        Just(",".to_string()),
        Just(" in ".to_string()),
        Just(" notin ".to_string()),
        Just("(".to_string()),
        Just(")".to_string()),
        Just(" ".to_string()),
        ".{0,3}",
    ];
    prop::collection::vec(token, 0..12).prop_map(|parts| parts.concat())
}
