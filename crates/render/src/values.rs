//! Helm values: merging them as Fleet does and translating Fleet's `${ }` values templating.
//!
//! Fleet treats `helm.values` strings as Go templates with `${ }` delimiters, filled per cluster.
//! flotilla renders once and lets the agent substitute placeholders per cluster, so the two forms
//! that name cluster facts become flotilla placeholders: `${ .ClusterName }` → `${cluster.name}`
//! and `${ .ClusterLabels.KEY }` (or `${ get .ClusterLabels "KEY" }`, `${ index .ClusterLabels
//! "KEY" }`) → `${cluster.labels.KEY}`. They survive `helm template` when the chart copies the
//! value into a manifest unchanged. Any other template (`.ClusterValues`, `.ClusterAnnotations`,
//! `.ClusterNamespace`, pipelines such as `| upper`) is an error naming it, unless the folder sets
//! `disablePreProcess: true` (Fleet then passes the text through, and so does flotilla).

use serde_json::{Map, Value};

/// Merges `overlay` into `base` as Fleet does: mappings merge key by key, recursively; anything
/// else in `overlay` replaces what `base` has.
pub(crate) fn deep_merge(base: &mut Map<String, Value>, overlay: &Map<String, Value>) {
    for (key, value) in overlay {
        match (base.get_mut(key), value) {
            (Some(Value::Object(existing)), Value::Object(more)) => deep_merge(existing, more),
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

/// `values` with Fleet's cluster templating translated to flotilla placeholders. `path` is where
/// the values come from (`helm.values`), for the error.
pub(crate) fn translate(
    values: &Map<String, Value>,
    path: &str,
) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for (key, value) in values {
        let at = format!("{path}.{key}");
        if key.contains("${") {
            return Err(format!(
                "{at}: Fleet templating in a values key is not supported by flotilla (placeholders \
                 are substituted in values only); rewrite the key, or set \
                 helm.disablePreProcess: true to keep it as text"
            ));
        }
        out.insert(key.clone(), translate_value(value, &at)?);
    }
    Ok(out)
}

fn translate_value(value: &Value, path: &str) -> Result<Value, String> {
    Ok(match value {
        Value::String(text) => Value::String(translate_text(text).map_err(|expression| {
            format!(
                "{path}: Fleet templating `${{{expression}}}` is not supported by flotilla, which \
                 substitutes only ${{ .ClusterName }} and ${{ .ClusterLabels.KEY }} (as \
                 ${{cluster.name}} and ${{cluster.labels.KEY}}) when it deploys; rewrite the \
                 value, or set helm.disablePreProcess: true to keep it as text"
            )
        })?),
        Value::Object(map) => Value::Object(translate(map, path)?),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(index, item)| translate_value(item, &format!("{path}[{index}]")))
                .collect::<Result<_, _>>()?,
        ),
        other => other.clone(),
    })
}

/// Translates every `${ … }` of `text`; the error is the first expression it cannot translate.
fn translate_text(text: &str) -> Result<String, String> {
    if !text.contains("${") {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        // `$${` is flotilla's escape for a literal `${`: keep it as it is.
        if start > 0 && rest[..start].ends_with('$') {
            out.push_str(&rest[..start + 2]);
            rest = &rest[start + 2..];
            continue;
        }
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(after.to_string());
        };
        let expression = &after[..end];
        out.push_str(&translate_expression(expression).ok_or_else(|| expression.to_string())?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The flotilla placeholder for one Fleet template expression, if it has one.
fn translate_expression(expression: &str) -> Option<String> {
    // Go templates trim surrounding space with `-` markers: `${- .ClusterName -}`.
    let inner = expression.trim();
    let inner = inner.strip_prefix("- ").unwrap_or(inner);
    let inner = inner.strip_suffix(" -").unwrap_or(inner).trim();
    let is_key = |key: &str| {
        !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '-' | '_'))
    };
    // Already a flotilla placeholder: keep it.
    if inner == "cluster.name"
        || inner.strip_prefix("cluster.labels.").is_some_and(is_key)
        || inner.strip_prefix("values.").is_some_and(is_key)
    {
        return Some(format!("${{{inner}}}"));
    }
    if inner == ".ClusterName" {
        return Some("${cluster.name}".to_string());
    }
    if let Some(key) = inner.strip_prefix(".ClusterLabels.")
        && !key.is_empty()
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Some(format!("${{cluster.labels.{key}}}"));
    }
    let words: Vec<&str> = inner.split_whitespace().collect();
    if let [function, ".ClusterLabels", quoted] = words.as_slice()
        && matches!(*function, "get" | "index")
        && let Some(key) = quoted
            .strip_prefix('"')
            .and_then(|key| key.strip_suffix('"'))
        && is_key(key)
    {
        return Some(format!("${{cluster.labels.{key}}}"));
    }
    None
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn fleet_cluster_templating_becomes_flotilla_placeholders() {
        let cases = [
            ("${ .ClusterName }", "${cluster.name}"),
            ("${.ClusterLabels.env}-x", "${cluster.labels.env}-x"),
            (
                "${ get .ClusterLabels \"topology.kubernetes.io/zone\" }",
                "${cluster.labels.topology.kubernetes.io/zone}",
            ),
            ("${- index .ClusterLabels \"a\" -}", "${cluster.labels.a}"),
            (
                "plain ${cluster.name} $${ .Literal }",
                "plain ${cluster.name} $${ .Literal }",
            ),
            ("no templates", "no templates"),
        ];
        for (fleet, flotilla) in cases {
            assert_eq!(translate_text(fleet).as_deref(), Ok(flotilla), "{fleet}");
        }
    }

    #[test]
    fn unsupported_templating_is_an_error_naming_it_and_the_value() {
        let values = json!({"a": {"b": ["x", "${ .ClusterValues.size | upper }"]}});
        let error = translate(values.as_object().unwrap(), "helm.values").unwrap_err();
        assert!(error.starts_with("helm.values.a.b[1]: "), "{error}");
        assert!(
            error.contains("${ .ClusterValues.size | upper }"),
            "{error}"
        );
        assert!(error.contains("disablePreProcess"), "{error}");
    }

    #[test]
    fn merge_is_recursive_for_mappings_only() {
        let mut base = json!({"a": {"x": 1, "y": 2}, "list": [1, 2], "keep": true});
        let overlay = json!({"a": {"y": 3}, "list": [9]});
        deep_merge(base.as_object_mut().unwrap(), overlay.as_object().unwrap());
        assert_eq!(
            base,
            json!({"a": {"x": 1, "y": 3}, "list": [9], "keep": true})
        );
    }
}
