//! Validation of object names, durations and label sets, with messages that say what to fix.

use std::collections::BTreeMap;

use crate::selector::{validate_label_key, validate_label_value};

/// Most labels one object (cluster, bundle, group, token) may carry. Kubernetes bounds labels
/// only by the 256 KiB of all labels and annotations together; flotilla interns every label of
/// every cluster and indexes each pair, so it needs a count. Targeting uses a handful of labels
/// (region, env, tier, a few team or hardware keys); 64 leaves room for generous conventions
/// while one object's labels stay under 64 × (253 + 1 + 63 + 63) bytes ≈ 24 KiB.
pub const MAX_LABELS: usize = 64;

/// Longest part of a refused label shown back in an error: enough to recognize it, while a
/// megabyte-long key is never echoed whole.
const SHOWN_CHARS: usize = 80;

/// `text`, cut to [`SHOWN_CHARS`] characters with a marker when longer (for error messages).
pub fn shown(text: &str) -> String {
    match text.char_indices().nth(SHOWN_CHARS) {
        Some((cut, _)) => format!("{}… ({} bytes)", &text[..cut], text.len()),
        None => text.to_string(),
    }
}

/// Checks a label set: at most [`MAX_LABELS`] labels, each key and value by the Kubernetes
/// rules (a key: optional DNS-subdomain prefix of up to 253 characters, `/`, a name of up to
/// 63; a value: up to 63). `field` names the labels in the message (`metadata.labels`).
pub fn validate_labels(field: &str, labels: &BTreeMap<String, String>) -> Result<(), String> {
    if labels.len() > MAX_LABELS {
        return Err(format!(
            "{field}: {} labels; an object may carry at most {MAX_LABELS}: remove some",
            labels.len()
        ));
    }
    for (key, value) in labels {
        validate_label_key(key)
            .and_then(|()| validate_label_value(value))
            .map_err(|e| {
                let e = if e.len() > 2 * SHOWN_CHARS + 100 {
                    "the key or value is too long or has characters labels do not allow".into()
                } else {
                    e
                };
                format!("{field} {}={}: {e}", shown(key), shown(value))
            })?;
    }
    Ok(())
}

/// Checks a DNS-1123 label (cluster and token names): 1–63 characters, lower-case letters, digits
/// and `-`, starting and ending with a letter or digit.
pub fn validate_dns_label(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("name is missing: set metadata.name".into());
    }
    if name.len() > 63 {
        return Err(format!(
            "name {name:?} is {} characters long; use at most 63",
            name.len()
        ));
    }
    check_dns_characters(name, false)
}

/// Checks a DNS-1123 subdomain (bundle and group names): up to 253 characters of lower-case
/// letters, digits, `-` and `.`, starting and ending with a letter or digit.
pub fn validate_dns_subdomain(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("name is missing: set metadata.name".into());
    }
    if name.len() > 253 {
        return Err(format!(
            "name {name:?} is {} characters long; use at most 253",
            name.len()
        ));
    }
    check_dns_characters(name, true)
}

fn check_dns_characters(name: &str, dots: bool) -> Result<(), String> {
    let allowed =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (dots && c == '.');
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !name.chars().all(allowed) || !edge(name.chars().next()) || !edge(name.chars().last()) {
        let what = if dots {
            "lower-case letters, digits, '-' and '.'"
        } else {
            "lower-case letters, digits and '-'"
        };
        return Err(format!(
            "invalid name {name:?}: use {what}, starting and ending with a letter or digit (e.g. \"store-0042\")"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels_reject_dots_capitals_and_edges() {
        assert!(validate_dns_label("store-0042").is_ok());
        assert!(validate_dns_label("a").is_ok());
        for bad in ["", "Store", "a.b", "-a", "a-", "a_b", &"a".repeat(64)] {
            assert!(validate_dns_label(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_label_set_holds_at_most_max_labels_valid_labels() {
        let many: BTreeMap<String, String> = (0..=MAX_LABELS)
            .map(|i| (format!("key-{i}"), "v".to_string()))
            .collect();
        let error = validate_labels("metadata.labels", &many).unwrap_err();
        assert!(error.contains("at most 64"), "{error}");
        let mut fits = many;
        fits.pop_first();
        assert!(validate_labels("metadata.labels", &fits).is_ok());
        let long = BTreeMap::from([("k".repeat(100_000), "v".to_string())]);
        let error = validate_labels("metadata.labels", &long).unwrap_err();
        assert!(error.len() < 400, "a long key is not echoed whole: {error}");
    }

    #[test]
    fn subdomains_allow_dots() {
        assert!(validate_dns_subdomain("web.prod-1").is_ok());
        assert!(validate_dns_subdomain(".web").is_err());
        assert!(validate_dns_subdomain(&"a".repeat(254)).is_err());
    }
}
