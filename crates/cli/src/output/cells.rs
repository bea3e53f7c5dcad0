//! Table cells from typed fields: optional values, label sets, ages, durations, selectors,
//! short digests.

use std::collections::BTreeMap;

use flotilla_api::LabelSelector;

use super::serial::to_json;

/// Text of an optional value; empty when absent.
pub(super) fn text<T: ToString>(value: Option<T>) -> String {
    value.map(|value| value.to_string()).unwrap_or_default()
}

/// `k=v,k2=v2`, as kubectl shows labels.
pub(super) fn labels(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// "3m"-style age of an RFC 3339 time; empty when absent or unreadable.
pub(super) fn age(text: Option<&str>) -> String {
    let Some(Ok(time)) = text.map(humantime::parse_rfc3339_weak) else {
        return String::new();
    };
    let Ok(elapsed) = std::time::SystemTime::now().duration_since(time) else {
        return "0s".into();
    };
    let seconds = elapsed.as_secs();
    match seconds {
        0..=119 => format!("{seconds}s"),
        120..=7_199 => format!("{}m", seconds / 60),
        7_200..=172_799 => format!("{}h", seconds / 3_600),
        _ => format!("{}d", seconds / 86_400),
    }
}

/// A duration in seconds as a table cell: `45s`, `1m30s`, `2h5m`.
pub fn seconds_text(seconds: u64) -> String {
    match seconds {
        0..=59 => format!("{seconds}s"),
        60..=3_599 if seconds.is_multiple_of(60) => format!("{}m", seconds / 60),
        60..=3_599 => format!("{}m{}s", seconds / 60, seconds % 60),
        _ if seconds % 3_600 / 60 == 0 => format!("{}h", seconds / 3_600),
        _ => format!("{}h{}m", seconds / 3_600, seconds % 3_600 / 60),
    }
}

/// A selector in its string form, e.g. `env=prod,tier in (a,b)`; `<all>` when it matches
/// everything.
pub(super) fn selector_text(selector: &LabelSelector) -> String {
    match flotilla_core::selector::Selector::from_api(selector) {
        Ok(selector) if selector.is_everything() => "<all>".into(),
        Ok(selector) => selector.to_string(),
        Err(_) => to_json(selector)
            .map(|json| json.to_string())
            .unwrap_or_default(),
    }
}

/// A digest or commit cut to its first 12 characters (after `sha256:`), as the tables show
/// commits.
pub(super) fn short(text: &str) -> String {
    let text = text.strip_prefix("sha256:").unwrap_or(text);
    text.chars().take(12).collect()
}

/// One line of text: an agent's messages can span several.
pub(super) fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_the_largest_units_that_fit() {
        assert_eq!(seconds_text(0), "0s");
        assert_eq!(seconds_text(59), "59s");
        assert_eq!(seconds_text(60), "1m");
        assert_eq!(seconds_text(90), "1m30s");
        assert_eq!(seconds_text(3_600), "1h");
        assert_eq!(seconds_text(3_600 * 2 + 5 * 60 + 7), "2h5m");
    }
}
