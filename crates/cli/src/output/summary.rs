//! The count line under a long table (`42 clusters: 40 Online, 2 Offline`), printed to standard
//! error so that standard output stays the table alone for scripts (`awk 'NR>1'`) and is never
//! mixed into `-o name`, JSON, YAML or JSONPath output.

use std::collections::BTreeMap;

use super::{kinds::Printable, table::STATE_HEADER};

/// Tables longer than this get a count line: a table that fits on a screen is counted by eye,
/// a fleet's hundreds of rows are not.
pub(super) const SUMMARY_AFTER_ROWS: usize = 20;

/// The count line for a table of `items`, if it is long enough to need one.
pub(super) fn line<K: Printable>(items: &[K]) -> Option<String> {
    if items.len() <= SUMMARY_AFTER_ROWS {
        return None;
    }
    let state_column = K::HEADERS.iter().position(|name| *name == STATE_HEADER);
    let states = state_column.map(|column| {
        items
            .iter()
            .map(|item| item.row().swap_remove(column))
            .collect()
    });
    Some(counts(items.len(), K::KIND.plural(), states))
}

/// `N plural`, then each state with its count, most common first (ties by name).
fn counts(total: usize, plural: &str, states: Option<Vec<String>>) -> String {
    let Some(states) = states else {
        return format!("{total} {plural}");
    };
    let mut by_state: BTreeMap<String, usize> = BTreeMap::new();
    for state in states {
        let state = if state.is_empty() {
            "no state".to_string()
        } else {
            state
        };
        *by_state.entry(state).or_default() += 1;
    }
    let mut by_state: Vec<(String, usize)> = by_state.into_iter().collect();
    by_state.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let parts: Vec<String> = by_state
        .into_iter()
        .map(|(state, count)| format!("{count} {state}"))
        .collect();
    format!("{total} {plural}: {}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use flotilla_api::{Cluster, Secret};
    use flotilla_client::Resource;

    use super::*;

    #[test]
    fn states_are_counted_most_common_first() {
        let states = ["Error", "Ready", "Ready", "", "Pending", "Error", "Ready"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            counts(7, "bundles", Some(states)),
            "7 bundles: 3 Ready, 2 Error, 1 Pending, 1 no state"
        );
        assert_eq!(counts(30, "secrets", None), "30 secrets");
    }

    #[test]
    fn only_tables_longer_than_a_screen_get_a_count() {
        let clusters: Vec<Cluster> = (0..SUMMARY_AFTER_ROWS)
            .map(|i| Cluster::new(&format!("c{i}"), Default::default()))
            .collect();
        assert_eq!(line(&clusters), None);
        let secrets: Vec<Secret> = (0..=SUMMARY_AFTER_ROWS)
            .map(|i| Secret::new(&format!("s{i}"), Default::default()))
            .collect();
        assert_eq!(line(&secrets).as_deref(), Some("21 secrets"));
    }
}
