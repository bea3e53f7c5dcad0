//! Label selectors (`labelSelector=`) and the two field selectors every real type supports
//! (`fieldSelector=metadata.name=..`, `metadata.namespace`), in the Kubernetes string syntax.

use serde_json::Value;

/// One requirement of a label selector; a selector is their AND.
#[derive(Debug, Clone, PartialEq)]
pub enum Requirement {
    /// `k=v` or `k==v`.
    Equals(String, String),
    /// `k!=v`: also true when the label is absent.
    NotEquals(String, String),
    /// `k in (a,b)`.
    In(String, Vec<String>),
    /// `k notin (a,b)`: also true when the label is absent.
    NotIn(String, Vec<String>),
    /// `k`.
    Exists(String),
    /// `!k`.
    DoesNotExist(String),
}

/// A parsed label selector. The empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector(pub Vec<Requirement>);

impl LabelSelector {
    /// Parses the string form (already URL-decoded). Supports `k=v`, `k==v`, `k!=v`, `k`, `!k`,
    /// `k in (a,b)`, `k notin (a,b)`, joined by commas. `>`/`<` are not supported.
    pub fn parse(text: &str) -> Result<LabelSelector, String> {
        let mut requirements = Vec::new();
        for term in split_top_level(text)? {
            let term = term.trim();
            if term.is_empty() {
                if text.trim().is_empty() {
                    continue;
                }
                return Err(format!(
                    "invalid label selector {text:?}: empty requirement"
                ));
            }
            requirements.push(
                parse_requirement(term)
                    .map_err(|why| format!("invalid label selector {text:?}: {why}"))?,
            );
        }
        Ok(LabelSelector(requirements))
    }

    /// Whether an object's `metadata.labels` satisfy every requirement.
    pub fn matches(&self, labels: Option<&serde_json::Map<String, Value>>) -> bool {
        let label = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
        self.0.iter().all(|requirement| match requirement {
            Requirement::Equals(k, v) => label(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => label(k) != Some(v.as_str()),
            Requirement::In(k, vs) => label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Requirement::NotIn(k, vs) => label(k).is_none_or(|l| vs.iter().all(|v| v != l)),
            Requirement::Exists(k) => label(k).is_some(),
            Requirement::DoesNotExist(k) => label(k).is_none(),
        })
    }
}

/// Splits on commas that are not inside `( )`.
fn split_top_level(text: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| format!("unbalanced ')' in {text:?}"))?
            }
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("unbalanced '(' in {text:?}"));
    }
    parts.push(&text[start..]);
    Ok(parts)
}

fn parse_requirement(term: &str) -> Result<Requirement, String> {
    if let Some(key) = term.strip_prefix('!') {
        return Ok(Requirement::DoesNotExist(key_of(key)?));
    }
    if let Some(open) = term.find('(') {
        // `key in (a,b)` / `key notin (a,b)`
        let mut head = term[..open].split_whitespace();
        let (Some(key), Some(op), None) = (head.next(), head.next(), head.next()) else {
            return Err(format!(
                "expected `key in (..)` or `key notin (..)`, got {term:?}"
            ));
        };
        let Some(inner) = term[open + 1..].trim_end().strip_suffix(')') else {
            return Err(format!("missing ')' in {term:?}"));
        };
        let values: Vec<String> = inner.split(',').map(|v| v.trim().to_string()).collect();
        let key = key_of(key)?;
        return match op {
            "in" => Ok(Requirement::In(key, values)),
            "notin" => Ok(Requirement::NotIn(key, values)),
            other => Err(format!("unknown set operator {other:?}")),
        };
    }
    if let Some((k, v)) = term.split_once("!=") {
        return Ok(Requirement::NotEquals(key_of(k)?, value_of(v)?));
    }
    if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(Requirement::Equals(key_of(k)?, value_of(v)?));
    }
    if term.contains(['<', '>']) {
        return Err(format!(
            "operators < and > are not supported by the stand-in: {term:?}"
        ));
    }
    Ok(Requirement::Exists(key_of(term)?))
}

fn key_of(text: &str) -> Result<String, String> {
    let key = text.trim();
    if key.is_empty() || key.contains(|c: char| c.is_whitespace() || "=!(),".contains(c)) {
        return Err(format!("invalid label key {key:?}"));
    }
    Ok(key.to_string())
}

fn value_of(text: &str) -> Result<String, String> {
    let value = text.trim();
    if value.contains(|c: char| c.is_whitespace() || "=!(),".contains(c)) {
        return Err(format!("invalid label value {value:?}"));
    }
    Ok(value.to_string())
}

/// A field selector: only `metadata.name` and `metadata.namespace` with `=`, `==`, `!=`.
#[derive(Debug, Clone, Default)]
pub struct FieldSelector(Vec<(String, bool /* equal */, String)>);

impl FieldSelector {
    pub fn parse(text: &str) -> Result<FieldSelector, String> {
        let mut terms = Vec::new();
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, equal, value) = match term.split_once("!=") {
                Some((f, v)) => (f, false, v),
                None => match term.split_once("==").or_else(|| term.split_once('=')) {
                    Some((f, v)) => (f, true, v),
                    None => return Err(format!("invalid field selector term {term:?}")),
                },
            };
            let field = field.trim();
            if field != "metadata.name" && field != "metadata.namespace" {
                return Err(format!("field label not supported: {field}"));
            }
            terms.push((field.to_string(), equal, value.trim().to_string()));
        }
        Ok(FieldSelector(terms))
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(field, equal, value)| {
            let key = field.trim_start_matches("metadata.");
            let actual = object["metadata"][key].as_str().unwrap_or("");
            (actual == value) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn matches(selector: &str, labels: Value) -> bool {
        LabelSelector::parse(selector)
            .unwrap()
            .matches(labels.as_object())
    }

    #[test]
    fn label_selector_syntax() {
        let labels = json!({"app": "web", "tier": "front", "flotilla.dev/bundle": "b1"});
        assert!(matches("", labels.clone()));
        assert!(matches("app=web", labels.clone()));
        assert!(matches("app==web,tier=front", labels.clone()));
        assert!(!matches("app=web,tier=back", labels.clone()));
        assert!(matches("app!=db", labels.clone()));
        assert!(matches("missing!=x", labels.clone()));
        assert!(matches("flotilla.dev/bundle", labels.clone()));
        assert!(matches("!missing", labels.clone()));
        assert!(!matches("!app", labels.clone()));
        assert!(matches("tier in (back, front),app", labels.clone()));
        assert!(!matches("tier notin (back,front)", labels.clone()));
        assert!(matches("missing notin (a)", labels.clone()));
        assert!(!matches("missing in (a)", labels.clone()));
        assert!(!matches("app=web", json!(null)));
        assert!(matches("!app", json!(null)));
    }

    #[test]
    fn label_selector_errors() {
        for bad in [
            "app=web,",
            "tier in (a",
            "tier between (a)",
            "a b",
            "=x",
            "x>1",
        ] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn field_selector() {
        let object = json!({"metadata": {"name": "a", "namespace": "prod"}});
        assert!(
            FieldSelector::parse("metadata.name=a")
                .unwrap()
                .matches(&object)
        );
        assert!(
            FieldSelector::parse("metadata.namespace!=dev,metadata.name==a")
                .unwrap()
                .matches(&object)
        );
        assert!(
            !FieldSelector::parse("metadata.name!=a")
                .unwrap()
                .matches(&object)
        );
        assert!(FieldSelector::parse("spec.nodeName=x").is_err());
    }
}
