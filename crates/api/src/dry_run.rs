//! How a server dry run and `flotilla diff` compare documents: one definition for both sides of
//! the wire, so the server's answer and the CLI's view of the live object line up.

use serde_json::Value;

/// How a dry run and `flotilla diff` show a Secret's value, which never leaves the server: the
/// same as the stored one...
pub const SECRET_VALUE_KEPT: &str = "(redacted)";
/// ...or different from it (or new).
pub const SECRET_VALUE_CHANGED: &str = "(redacted, changed)";

/// A document without what the server sets: `status`, and `metadata.resourceVersion`,
/// `generation` and `creationTimestamp`.
pub fn without_server_fields(mut document: Value) -> Value {
    if let Value::Object(object) = &mut document {
        object.remove("status");
        if let Some(Value::Object(metadata)) = object.get_mut("metadata") {
            for field in ["resourceVersion", "generation", "creationTimestamp"] {
                metadata.remove(field);
            }
        }
    }
    document
}

/// A Secret as GET shows it (keys in `status.keys`, no values) in the shape a dry run answers
/// it: each key with [`SECRET_VALUE_KEPT`], so only keys whose value changes differ.
pub fn masked_secret_view(mut view: Value) -> Value {
    let keys: Vec<String> = view
        .pointer("/status/keys")
        .and_then(Value::as_array)
        .map(|keys| {
            keys.iter()
                .filter_map(|key| key.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if let Some(Value::Object(spec)) = view.get_mut("spec")
        && !keys.is_empty()
    {
        let masked = keys
            .into_iter()
            .map(|key| (key, Value::from(SECRET_VALUE_KEPT)))
            .collect();
        spec.insert("stringData".into(), Value::Object(masked));
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_set_fields_are_left_out_of_both_sides() {
        let document = serde_json::json!({
            "kind": "Bundle",
            "metadata": {"name": "web", "resourceVersion": "7", "generation": 2,
                         "creationTimestamp": "2026-01-01T00:00:00Z", "labels": {"a": "b"}},
            "spec": {},
            "status": {"ready": 1},
        });
        let kept = without_server_fields(document);
        assert_eq!(
            kept,
            serde_json::json!({"kind": "Bundle", "metadata": {"name": "web", "labels": {"a": "b"}}, "spec": {}})
        );
    }

    #[test]
    fn a_secrets_view_shows_its_keys_masked_and_never_a_value() {
        let view = serde_json::json!({
            "kind": "Secret",
            "metadata": {"name": "creds"},
            "spec": {"type": "basic-auth"},
            "status": {"keys": ["password", "username"]},
        });
        let masked = masked_secret_view(view);
        assert_eq!(
            masked["spec"]["stringData"],
            serde_json::json!({"password": SECRET_VALUE_KEPT, "username": SECRET_VALUE_KEPT})
        );
    }
}
